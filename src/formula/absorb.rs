//! fixest's absorbed fixed effects: `y ~ x1 + x2 | fe1 + fe2`.
//!
//! The part before the top-level `|` is an ordinary patsy formula; after
//! it come the columns whose levels are absorbed (each a bare column name,
//! any type: its values are levels). Split here, before patsy's grammar
//! sees the `|` (patsy has no such operator).

use super::FormulaError;

/// The most fixed effects an absorbed fit takes (see `crate::factors`).
pub const MAX_ABSORBED: usize = 2;

/// A formula with absorbed fixed effects, split.
#[derive(Clone, Debug, PartialEq)]
pub struct Absorbed {
    /// The patsy formula before the `|`.
    pub formula: String,
    /// The absorbed columns, in the order written.
    pub columns: Vec<String>,
    /// Byte offset of the `|` in the whole formula.
    pub bar: usize,
}

/// Byte offset of the top-level `|` (outside parentheses, brackets and
/// quotes), if any.
fn top_level_bar(formula: &str) -> Result<Option<usize>, FormulaError> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut found = None;
    for (i, c) in formula.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, '|') if depth == 0 => {
                if found.is_some() {
                    return Err(FormulaError::at(formula, i, i + 1, "only one '|' may separate the fixed effects"));
                }
                found = Some(i);
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Split `formula` at its top-level `|`: `None` when it has none.
pub fn split_absorbed(formula: &str) -> Result<Option<Absorbed>, FormulaError> {
    let Some(bar) = top_level_bar(formula)? else { return Ok(None) };
    let main = &formula[..bar];
    if !main.contains('~') {
        return Err(FormulaError::at(formula, bar, bar + 1, "the fixed effects ('| fe') follow a formula 'y ~ x'"));
    }
    let mut columns: Vec<String> = Vec::new();
    let mut start = bar + 1;
    for part in formula[bar + 1..].split('+') {
        let (lead, name) = (part.len() - part.trim_start().len(), part.trim());
        let (s, e) =
            if name.is_empty() { (start, start + part.len()) } else { (start + lead, start + lead + name.len()) };
        start += part.len() + 1;
        let message = if name.is_empty() {
            Some("a fixed effect is missing here (write '| column' or '| fe1 + fe2')".to_string())
        } else if name.contains('^') {
            Some("combined fixed effects (fe1^fe2) are not supported; add a column holding the combination".into())
        } else if !name.chars().all(|c| c.is_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            Some(format!("a fixed effect is a column name, not '{name}'"))
        } else if columns.iter().any(|c| c == name) {
            Some(format!("the fixed effect '{name}' is given twice"))
        } else {
            None
        };
        if let Some(m) = message {
            return Err(FormulaError::at(formula, s, e.max(s + 1), &m));
        }
        columns.push(name.to_string());
    }
    if columns.len() > MAX_ABSORBED {
        return Err(FormulaError::at(
            formula,
            bar + 1,
            formula.len(),
            &format!("at most {MAX_ABSORBED} fixed effects can be absorbed, not {}", columns.len()),
        ));
    }
    Ok(Some(Absorbed { formula: main.trim_end().to_string(), columns, bar }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_top_level_bar_only() {
        let a = split_absorbed("rent ~ size_sqft + C(b, Treatment('a|b')) | neighborhood + borough").unwrap().unwrap();
        assert_eq!(a.formula, "rent ~ size_sqft + C(b, Treatment('a|b'))");
        assert_eq!(a.columns, ["neighborhood", "borough"]);
        assert_eq!(split_absorbed("rent ~ I(a | b)").unwrap(), None);
        assert_eq!(split_absorbed("rent ~ x").unwrap(), None);
    }

    #[test]
    fn refuses_what_it_cannot_absorb() {
        let msg = |f: &str| split_absorbed(f).unwrap_err().message;
        assert_eq!(msg("y ~ x | a | b"), "only one '|' may separate the fixed effects");
        assert_eq!(msg("y ~ x | "), "a fixed effect is missing here (write '| column' or '| fe1 + fe2')");
        assert_eq!(
            msg("y ~ x | a^b"),
            "combined fixed effects (fe1^fe2) are not supported; add a column holding the combination"
        );
        assert_eq!(msg("y ~ x | a + a"), "the fixed effect 'a' is given twice");
        assert_eq!(msg("y ~ x | a + b + c"), "at most 2 fixed effects can be absorbed, not 3");
        assert_eq!(msg("y ~ x | np.log(a)"), "a fixed effect is a column name, not 'np.log(a)'");
        assert_eq!(msg("x | a"), "the fixed effects ('| fe') follow a formula 'y ~ x'");
        let e = split_absorbed("y ~ x | a + + b").unwrap_err();
        assert_eq!((e.start, &e.formula[e.start..e.end]), (11, " "));
    }
}

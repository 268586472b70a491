//! A tokenizer for the Python subset that formulas are written in, and
//! patsy's re-spacing of Python code (`pretty_untokenize`), which decides how
//! factor names are spelled: `I(x/100)` is named `I(x / 100)`.

use super::FormulaError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Name,
    Number,
    Str,
    Op,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: Kind,
    pub text: String,
    /// Byte offsets into the formula text.
    pub start: usize,
    pub end: usize,
}

const OPS3: [&str; 2] = ["**=", "//="];
const OPS2: [&str; 10] = ["**", "//", "==", "!=", "<=", ">=", "<<", ">>", "->", "<>"];
const OPS1: &str = "+-*/%()[]{},:.~=<>|&^@!";

/// Split `text` into Python tokens (names, numbers, strings, operators).
pub fn tokenize(text: &str) -> Result<Vec<Token>, FormulaError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80) {
                i += 1;
            }
            out.push(Token { kind: Kind::Name, text: text[start..i].to_string(), start, end: i });
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit()) {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.' || bytes[i] == b'_') {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                let mut j = i + 1;
                if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                    j += 1;
                }
                if j < bytes.len() && bytes[j].is_ascii_digit() {
                    i = j;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            out.push(Token { kind: Kind::Number, text: text[start..i].to_string(), start, end: i });
            continue;
        }
        if c == b'\'' || c == b'"' {
            i += 1;
            let mut closed = false;
            while i < bytes.len() {
                if bytes[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if bytes[i] == c {
                    i += 1;
                    closed = true;
                    break;
                }
                i += 1;
            }
            if !closed {
                return Err(FormulaError::at(text, start, text.len(), "unterminated string"));
            }
            out.push(Token { kind: Kind::Str, text: text[start..i].to_string(), start, end: i });
            continue;
        }
        let rest = &text[i..];
        let op = OPS3
            .iter()
            .chain(OPS2.iter())
            .find(|op| rest.starts_with(**op))
            .map(|s| s.len())
            .or_else(|| OPS1.as_bytes().contains(&c).then_some(1));
        match op {
            Some(len) => {
                out.push(Token { kind: Kind::Op, text: text[i..i + len].to_string(), start, end: i + len });
                i += len;
            }
            None => {
                let ch = rest.chars().next().unwrap_or('?');
                return Err(FormulaError::at(text, i, i + ch.len_utf8(), &format!("unexpected character '{ch}'")));
            }
        }
    }
    Ok(out)
}

const SPACE_BOTH: [&str; 19] =
    ["+", "-", "*", "/", "%", "&", "^", "|", "<", ">", "==", "<>", "!=", "<=", ">=", "<<", ">>", "**", "//"];

/// patsy's `pretty_untokenize`: re-join Python tokens with canonical spacing.
pub fn pretty_untokenize(tokens: &[Token]) -> String {
    let mut text = String::new();
    let mut prev_was_space_delim = false;
    let mut prev_wants_space = false;
    let mut prev_was_open_paren_or_comma = false;
    let mut prev_was_object_like = false;
    let mut brackets: Vec<&str> = Vec::new();
    for tok in tokens {
        let t = tok.text.as_str();
        if matches!(tok.kind, Kind::Name | Kind::Number | Kind::Str) {
            if prev_wants_space || prev_was_space_delim {
                text.push(' ');
            }
            text.push_str(t);
            prev_wants_space = false;
            prev_was_space_delim = true;
        } else {
            if matches!(t, "(" | "[" | "{") {
                brackets.push(t);
            } else if !brackets.is_empty() && matches!(t, ")" | "]" | "}") {
                brackets.pop();
            }
            let mut before = SPACE_BOTH.contains(&t) || t == "!" || t == "~";
            let mut after = SPACE_BOTH.contains(&t) || t == "," || t == ":";
            if t == ":" && brackets.last() == Some(&"[") {
                after = false;
            }
            if (t == "*" || t == "**") && prev_was_open_paren_or_comma {
                before = false;
                after = false;
            }
            if t == "=" && brackets.is_empty() {
                before = true;
                after = true;
            }
            if (t == "+" || t == "-") && !prev_was_object_like {
                before = false;
                after = false;
            }
            if prev_wants_space || before {
                text.push(' ');
            }
            text.push_str(t);
            prev_wants_space = after;
            prev_was_space_delim = false;
        }
        prev_was_object_like = matches!(tok.kind, Kind::Name | Kind::Number | Kind::Str) || t == ")";
        prev_was_open_paren_or_comma = t == "(" || t == ",";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        pretty_untokenize(&tokenize(s).unwrap())
    }

    #[test]
    fn respaces_like_patsy() {
        assert_eq!(norm("I(x/100)"), "I(x / 100)");
        assert_eq!(norm("np.log( size_sqft )"), "np.log(size_sqft)");
        assert_eq!(norm("C(borough,Treatment(reference='Queens'))"), "C(borough, Treatment(reference='Queens'))");
        assert_eq!(norm("I(-x**2)"), "I(-x ** 2)");
        assert_eq!(norm("I(x - -1)"), "I(x - -1)");
        assert_eq!(norm("Q('odd name')"), "Q('odd name')");
    }
}

//! Numbers in CSV cells: integers and decimals, the common short forms by
//! a direct loop and everything else by the standard library's parsers —
//! the same value either way.
//!
//! The short decimal form (`-123.4567`: at most 19 digits, at most 22
//! after the mark, the digits as an integer below 2⁵³) is Clinger's fast
//! path (W. D. Clinger, "How to read floating point numbers accurately",
//! PLDI 1990, §5): the digits m and 10ᵏ are both exact doubles, so m / 10ᵏ
//! is one correctly rounded IEEE division — the correctly rounded value
//! of the decimal, as `str::parse::<f64>` gives it (which takes the same
//! path first).

/// 10⁰ … 10²², all exact in binary64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// The integer in a cell (surrounding ASCII whitespace allowed, as
/// `i64::from_str` reads the rest: an optional sign and digits).
#[inline]
pub(super) fn parse_int(cell: &[u8]) -> Option<i64> {
    if let Some(v) = short_int(cell) {
        return Some(v);
    }
    // Only a sign, whitespace or many digits can make it an integer now.
    if !cell.iter().all(|&c| c.is_ascii_digit() || c == b'+' || c == b'-' || c.is_ascii_whitespace()) {
        return None;
    }
    std::str::from_utf8(cell.trim_ascii()).ok()?.parse().ok()
}

/// Up to 18 digits with an optional `-`: no overflow possible.
#[inline]
fn short_int(cell: &[u8]) -> Option<i64> {
    let (neg, digits) = match cell {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, cell),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v = 0i64;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + i64::from(d);
    }
    Some(if neg { -v } else { v })
}

/// A number with `decimal` (`.` or `,`) as its decimal mark, as
/// `f64::from_str` reads it once the mark is a point (surrounding ASCII
/// whitespace allowed); with a decimal comma a cell holding a `.` is no
/// number.
#[inline]
pub(super) fn parse_float(cell: &[u8], decimal: u8) -> Option<f64> {
    if let Some(v) = short_decimal(cell, decimal) {
        return Some(v);
    }
    let t = cell.trim_ascii();
    if decimal == b'.' {
        return std::str::from_utf8(t).ok()?.parse().ok();
    }
    if t.contains(&b'.') {
        return None;
    }
    let mut buf = [0u8; 64];
    let s = buf.get_mut(..t.len())?;
    for (o, &c) in s.iter_mut().zip(t) {
        *o = if c == decimal { b'.' } else { c };
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `-?digits[mark digits]` with at least one digit, at most 19 digits in
/// all and 22 after the mark, the digits below 2⁵³: m / 10ᵏ, correctly
/// rounded. `None`: another form (the caller's slower parser decides).
#[inline]
fn short_decimal(cell: &[u8], decimal: u8) -> Option<f64> {
    let (neg, body) = match cell {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, cell),
    };
    if body.is_empty() || body.len() > 20 {
        return None;
    }
    let (int, frac) = match body.iter().position(|&c| c == decimal) {
        Some(k) => (&body[..k], &body[k + 1..]),
        None => (body, &body[body.len()..]),
    };
    let digits = int.len() + frac.len();
    if digits == 0 || digits > 19 {
        return None;
    }
    // At most 19 digits: no overflow.
    let mut m = 0u64;
    for &c in int.iter().chain(frac) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        m = m * 10 + u64::from(d);
    }
    if m >= 1 << 53 {
        return None;
    }
    let v = m as f64 / POW10[frac.len()];
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_float(s: &str) -> Option<f64> {
        s.trim_ascii().parse().ok()
    }

    #[test]
    fn short_forms_give_the_standard_value() {
        let cells = [
            "0",
            "-0",
            "1",
            "-1",
            "0.1",
            "-0.1",
            "1.",
            ".5",
            "-.5",
            "123.456",
            "9007199254740991",
            "9007199254740992",
            "0.0000000000000000000001",
            "1234567890.123456789",
            "99999999999999999999",
            "3.14159",
            "007.50",
            "1e5",
            "inf",
            "NaN",
            " 1.5",
            "1.5 ",
            "+1.5",
            ".",
            "-",
            "",
            "1.2.3",
            "1-2",
            "4503599627370495.5",
        ];
        for c in cells {
            let got = parse_float(c.as_bytes(), b'.');
            let want = std_float(c);
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{c:?}");
        }
        assert_eq!(parse_float(b"1234,56", b',').unwrap().to_bits(), 1234.56f64.to_bits());
        assert_eq!(parse_float(b"1.5", b','), None);
        for c in ["0", "-0", "42", "-42", "+7", " 7", "123456789012345678", "1234567890123456789", "x", "", "-", "1.0"]
        {
            assert_eq!(parse_int(c.as_bytes()), c.trim_ascii().parse::<i64>().ok(), "{c:?}");
        }
    }

    #[test]
    fn random_decimals_match_the_standard_parser() {
        // A fixed LCG: digits, marks and lengths of every kind.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            s >> 33
        };
        for _ in 0..200_000 {
            let len = 1 + next() as usize % 21;
            let mut t = String::new();
            if next() % 4 == 0 {
                t.push('-');
            }
            let mark = next() as usize % (len + 1);
            for i in 0..len {
                if i == mark {
                    t.push('.');
                }
                t.push(char::from(b'0' + (next() % 10) as u8));
            }
            let got = parse_float(t.as_bytes(), b'.');
            assert_eq!(got.map(f64::to_bits), std_float(&t).map(f64::to_bits), "{t:?}");
        }
    }
}

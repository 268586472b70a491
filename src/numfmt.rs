//! Numbers and dates as Python prints them (`%g`, `%f`, `str.center`,
//! `time.strftime`), so that summaries match statsmodels' character for
//! character. The lowest layer of reporting: diagnostics' warnings use it
//! too.

/// C's `%[#]W.Pg` as Python formats it.
pub fn fmt_g(x: f64, width: usize, prec: usize, alt: bool) -> String {
    let s = g_body(x, prec.max(1), alt);
    format!("{s:>width$}")
}

fn g_body(x: f64, p: usize, alt: bool) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let exp = if x == 0.0 {
        0
    } else {
        let e = format!("{:.*e}", p - 1, x);
        e.split_once('e').map_or(0, |(_, ex)| ex.parse::<i32>().unwrap_or(0))
    };
    let mut s = if exp < -4 || exp >= p as i32 {
        let e = format!("{:.*e}", p - 1, x);
        let (mant, ex) = e.split_once('e').unwrap_or((&e, "0"));
        let ex: i32 = ex.parse().unwrap_or(0);
        let mut mant = mant.to_string();
        if !alt {
            mant = strip_zeros(&mant);
        } else if !mant.contains('.') {
            mant.push('.');
        }
        format!("{mant}e{}{:02}", if ex < 0 { '-' } else { '+' }, ex.abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        let mut f = format!("{x:.decimals$}");
        if !alt {
            f = strip_zeros(&f);
        } else if !f.contains('.') {
            f.push('.');
        }
        f
    };
    if s == "-0" {
        s = "-0".into();
    }
    s
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// C's `%W.Pf`.
pub fn fmt_f(x: f64, width: usize, prec: usize) -> String {
    let s = if x.is_nan() {
        "nan".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{x:.prec$}")
    };
    format!("{s:>width$}")
}

/// Python's `str.center`.
pub fn center(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if len >= width {
        return s.to_string();
    }
    let marg = width - len;
    let left = marg / 2 + (marg & width & 1);
    format!("{}{}{}", " ".repeat(left), s, " ".repeat(marg - left))
}

/// Civil date and time (UTC) of a Unix timestamp:
/// (`"Wed, 25 Nov 2026"`, `"17:42:14"`).
pub fn date_time(ts: u64) -> (String, String) {
    let days = (ts / 86_400) as i64;
    let secs = ts % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(m - 1) as usize];
    (format!("{wd}, {d:02} {mon} {y}"), format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_format_matches_python() {
        assert_eq!(fmt_g(-46672.3, 8, 5, true), " -46672.");
        assert_eq!(fmt_g(93360.0, 8, 4, true), "9.336e+04");
        assert_eq!(fmt_g(143.7123, 8, 4, true), "   143.7");
        assert_eq!(fmt_g(7.04e-143, 6, 3, true), "7.04e-143");
        assert_eq!(fmt_g(306.2, 8, 3, true), "    306.");
        assert_eq!(fmt_g(5.93e-25, 6, 3, false), "5.93e-25");
        assert_eq!(fmt_g(1570.0, 6, 3, false), "1.57e+03");
        assert_eq!(fmt_g(0.0, 6, 3, true), "  0.00");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(date_time(0), ("Thu, 01 Jan 1970".into(), "00:00:00".into()));
        assert_eq!(date_time(1_795_628_534).0, "Wed, 25 Nov 2026");
    }

    #[test]
    fn center_matches_python() {
        assert_eq!(center("OLS Regression Results", 87).find('O'), Some(33));
        assert_eq!(center("abc", 6), " abc  ");
    }
}

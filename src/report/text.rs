//! The text summary in statsmodels' "OLS Regression Results" layout
//! (`statsmodels/iolib/summary.py`: `summary_top`, `summary_params` and the
//! `fmt_2cols`/`fmt_params` table formats), then gramfit's own block.

use super::RunInfo;
use crate::numfmt::{center, date_time, fmt_f, fmt_g};
use crate::results::OlsResults;

/// statsmodels' `forg`: fixed unless very large or small.
fn forg(x: f64, prec: usize) -> String {
    let big = x.abs() >= 1e4 || x.abs() < 1e-4;
    match prec {
        4 if big => fmt_g(x, 10, 4, false),
        4 => fmt_f(x, 10, 4),
        _ if big => fmt_g(x, 9, 3, false),
        _ => fmt_f(x, 9, 3),
    }
}

fn d_or_f(x: f64) -> String {
    if x.is_nan() {
        "   NaN".into()
    } else if x.fract() == 0.0 {
        format!("{:>6}", x as i64)
    } else {
        fmt_f(x, 8, 2)
    }
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String, width: usize) -> String {
    match x {
        Some(v) => f(v),
        None => format!("{:>width$}", "nan"),
    }
}

fn two_cols(title: &str, left: &[(String, String)], right: &[(String, String)]) -> Vec<String> {
    let rows = left.len().max(right.len());
    let get = |v: &[(String, String)], i: usize| v.get(i).cloned().unwrap_or_default();
    let lw = left.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0).max(18);
    let lv = left.iter().map(|(_, v)| v.chars().count()).max().unwrap_or(0).max(18);
    let rw = right.iter().map(|(k, _)| k.chars().count() + 2).max().unwrap_or(0).max(21);
    let rv = right.iter().map(|(_, v)| v.chars().count()).max().unwrap_or(0).max(19);
    let width = lw + 1 + lv + 1 + rw + rv;
    let mut out = Vec::new();
    if !title.is_empty() {
        out.push(center(title, width));
    }
    out.push("=".repeat(width));
    for i in 0..rows {
        let (lk, lval) = get(left, i);
        let (rk, rval) = get(right, i);
        let rk = if rk.is_empty() { String::new() } else { format!("  {rk}") };
        out.push(format!("{lk:<lw$} {lval:>lv$} {rk:<rw$}{rval:>rv$}"));
    }
    out
}

/// The top, coefficient and bottom tables plus numbered notes.
pub fn statsmodels_tables(res: &OlsResults, info: &RunInfo) -> String {
    let (date, time) = date_time(info.fitted_at);
    let unc = if res.k_constant == 1 { "" } else { " (uncentered)" };
    let left: Vec<(String, String)> = vec![
        ("Dep. Variable:".into(), res.dep_variable.clone()),
        ("Model:".into(), res.model.into()),
        ("Method:".into(), "Least Squares".into()),
        ("Date:".into(), date),
        ("Time:".into(), time),
        ("No. Observations:".into(), d_or_f(res.nobs as f64)),
        ("Df Residuals:".into(), d_or_f(res.df_resid)),
        ("Df Model:".into(), d_or_f(res.df_model)),
        ("Covariance Type:".into(), res.cov_type.name().into()),
    ];
    let right: Vec<(String, String)> = vec![
        (format!("R-squared{unc}:"), fmt_f(res.rsquared, 8, 3)),
        (format!("Adj. R-squared{unc}:"), fmt_f(res.rsquared_adj, 8, 3)),
        ("F-statistic:".into(), fmt_g(res.fvalue, 8, 4, true)),
        ("Prob (F-statistic):".into(), fmt_g(res.f_pvalue, 6, 3, true)),
        ("Log-Likelihood:".into(), fmt_g(res.llf, 8, 5, true)),
        ("AIC:".into(), fmt_g(res.aic, 8, 4, true)),
        ("BIC:".into(), fmt_g(res.bic, 8, 4, true)),
    ];
    let mut lines = two_cols(&format!("{} Regression Results", res.model), &left, &right);

    // Coefficient table: stub ≥ 10 wide, data columns 10 (11 for the CI).
    let stub = res.names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(10);
    let width = stub + 4 * 11 + 2 * 12;
    lines.push("=".repeat(width));
    let lo = format!("[{}", res.alpha / 2.0);
    let hi = format!("{}]", 1.0 - res.alpha / 2.0);
    let (stat, pcol) = if res.use_t { ("t", "P>|t|") } else { ("z", "P>|z|") };
    lines
        .push(format!("{:stub$} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}", "", "coef", "std err", stat, pcol, lo, hi));
    lines.push("-".repeat(width));
    for i in 0..res.names.len() {
        let name = &res.names[i];
        match res.params[i] {
            None => lines.push(format!("{name:<stub$} {:>10}", "(aliased)")),
            Some(b) => {
                let (cl, ch) = res.conf_int[i].map_or((None, None), |(a, b)| (Some(a), Some(b)));
                lines.push(format!(
                    "{name:<stub$} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
                    forg(b, 4),
                    opt(res.bse[i], |v| forg(v, 3), 9),
                    opt(res.tvalues[i], |v| forg(v, 3), 9),
                    opt(res.pvalues[i], |v| fmt_f(v, 6, 3), 6),
                    opt(cl, |v| forg(v, 3), 9),
                    opt(ch, |v| forg(v, 3), 9),
                ));
            }
        }
    }
    // Bottom block: the residual statistics need a second pass over the
    // data; the condition number comes from the state.
    let cond = res.diagnostics.condition_number;
    let bottom = match &res.residuals {
        Some(snap) => {
            let r = &snap.diagnostics;
            two_cols(
                "",
                &[
                    ("Omnibus:".into(), fmt_f(r.omnibus, 6, 3)),
                    ("Prob(Omnibus):".into(), fmt_f(r.prob_omnibus, 6, 3)),
                    ("Skew:".into(), fmt_f(r.skew, 6, 3)),
                    ("Kurtosis:".into(), fmt_f(r.kurtosis, 6, 3)),
                ],
                &[
                    ("Durbin-Watson:".into(), fmt_f(r.durbin_watson, 8, 3)),
                    ("Jarque-Bera (JB):".into(), fmt_f(r.jarque_bera, 8, 3)),
                    ("Prob(JB):".into(), fmt_g(r.prob_jb, 8, 3, true)),
                    ("Cond. No.".into(), fmt_g(cond, 8, 3, true)),
                ],
            )
        }
        None => two_cols("", &[(String::new(), String::new())], &[("Cond. No.".to_string(), fmt_g(cond, 8, 3, true))]),
    };
    lines.extend(bottom);
    lines.push("=".repeat(lines.last().map_or(78, |l| l.chars().count())));
    let mut text = lines.join("\n");
    if !res.notes.is_empty() {
        text.push_str("\n\nNotes:");
        for (i, n) in res.notes.iter().enumerate() {
            text.push_str(&format!("\n[{}] {n}", i + 1));
        }
    }
    text
}

/// gramfit's block: aliasing, rows, inputs, diagnostics, time.
pub fn gramfit_block(res: &OlsResults, info: &RunInfo) -> String {
    let mut out = vec![String::new(), "gramfit".to_string(), "-".repeat(78)];
    for (i, n) in res.gramfit_notes.iter().enumerate() {
        out.push(format!("[{}] {n}", (b'a' + (i % 26) as u8) as char));
    }
    out.push(format!("Formula:      {}", info.formula));
    if let Some(w) = &info.weights {
        out.push(format!("Weights:      {w}"));
    }
    out.push(format!(
        "Rows:         {} read, {} used, {} dropped (missing values)",
        info.rows_read,
        info.rows_read - info.rows_dropped,
        info.rows_dropped
    ));
    match info.inputs.len() {
        0 => {}
        1 => out.push(format!("Input:        {}", info.inputs[0].path)),
        n if n <= 5 => {
            out.push("Inputs:".into());
            for i in &info.inputs {
                out.push(format!("  {} ({} rows)", i.path, i.rows_read));
            }
        }
        n => out.push(format!("Inputs:       {n} inputs, first {}", info.inputs[0].path)),
    }
    out.push(format!(
        "Scale-free condition number: {}",
        if res.diagnostics.scale_free_condition_number.is_finite() {
            format!("{:.1}", res.diagnostics.scale_free_condition_number)
        } else {
            "inf (singular)".into()
        }
    ));
    out.push(format!("Pass over the data: {:.3} s", info.elapsed_s));
    out.join("\n")
}

pub fn summary(res: &OlsResults, info: &RunInfo) -> String {
    format!("{}\n{}\n", statsmodels_tables(res, info), gramfit_block(res, info))
}

/// Coefficient `i` as a Markdown table row, after `lead` (earlier cells,
/// each ending in ` | `).
pub(crate) fn md_coef_row(res: &OlsResults, i: usize, lead: &str) -> String {
    let (lo, hi) = res.conf_int[i].map_or((None, None), |(a, b)| (Some(a), Some(b)));
    if res.params[i].is_none() {
        return format!("| {lead}`{}` | aliased | | | | | |\n", res.names[i]);
    }
    format!(
        "| {lead}`{}` | {} | {} | {} | {} | {} | {} |\n",
        res.names[i],
        md_num(res.params[i]),
        md_num(res.bse[i]),
        md_num(res.tvalues[i]),
        md_num(res.pvalues[i]),
        md_num(lo),
        md_num(hi)
    )
}

pub(crate) fn md_num(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| fmt_g(v, 0, 6, false))
}

/// A Markdown report: headline statistics, the coefficient table, notes.
pub fn markdown(res: &OlsResults, info: &RunInfo) -> String {
    let mut s = format!("## {} regression: `{}`\n\n", res.model, info.formula);
    s.push_str("| statistic | value |\n|---|---|\n");
    for (k, v) in [
        ("No. Observations", res.nobs.to_string()),
        ("Df Residuals", res.df_resid.to_string()),
        ("Df Model", res.df_model.to_string()),
        ("R-squared", format!("{:.6}", res.rsquared)),
        ("Adj. R-squared", format!("{:.6}", res.rsquared_adj)),
        ("F-statistic", fmt_g(res.fvalue, 0, 6, false)),
        ("Prob (F-statistic)", fmt_g(res.f_pvalue, 0, 4, false)),
        ("Log-Likelihood", fmt_g(res.llf, 0, 6, false)),
        ("AIC", fmt_g(res.aic, 0, 6, false)),
        ("BIC", fmt_g(res.bic, 0, 6, false)),
        ("Cond. No.", fmt_g(res.diagnostics.condition_number, 0, 4, false)),
    ] {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    s.push_str("\n| | coef | std err | t | P>\\|t\\| | [0.025 | 0.975] |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for i in 0..res.names.len() {
        s.push_str(&md_coef_row(res, i, ""));
    }
    let notes: Vec<&String> = res.notes.iter().chain(res.gramfit_notes.iter()).collect();
    if !notes.is_empty() {
        s.push_str("\n**Notes**\n\n");
        for (i, n) in notes.iter().enumerate() {
            s.push_str(&format!("{}. {}\n", i + 1, n.replace('\n', " ")));
        }
    }
    s.push_str(&format!("\nRows: {} read, {} dropped.\n", info.rows_read, info.rows_dropped));
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The coefficient table as CSV, full precision (`repr`-style shortest
/// round-trip digits), empty fields where undefined.
pub fn coef_csv(res: &OlsResults) -> String {
    coef_table_csv(&CoefTable {
        alpha: res.alpha,
        names: &res.names,
        params: &res.params,
        bse: &res.bse,
        tvalues: &res.tvalues,
        pvalues: &res.pvalues,
        conf_int: &res.conf_int,
    })
}

/// The columns of a coefficient table (a plain fit's, an absorbed fit's).
pub struct CoefTable<'a> {
    pub alpha: f64,
    pub names: &'a [String],
    pub params: &'a [Option<f64>],
    pub bse: &'a [Option<f64>],
    pub tvalues: &'a [Option<f64>],
    pub pvalues: &'a [Option<f64>],
    pub conf_int: &'a [Option<(f64, f64)>],
}

/// A coefficient table as CSV (see [`coef_csv`]).
pub fn coef_table_csv(t: &CoefTable<'_>) -> String {
    let lo = format!("[{}", t.alpha / 2.0);
    let hi = format!("{}]", 1.0 - t.alpha / 2.0);
    let mut s = format!("term,coef,std_err,t,p,{},{},aliased\n", csv_field(&lo), csv_field(&hi));
    let f = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:?}"));
    for i in 0..t.names.len() {
        let (l, h) = t.conf_int[i].map_or((None, None), |(a, b)| (Some(a), Some(b)));
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            csv_field(&t.names[i]),
            f(t.params[i]),
            f(t.bse[i]),
            f(t.tvalues[i]),
            f(t.pvalues[i]),
            f(l),
            f(h),
            t.params[i].is_none()
        ));
    }
    s
}

//! Reports of an absorbed fit (`y ~ x | fe`), laid out as pyfixest's
//! `summary()` (the coefficient table's columns and the fit line below
//! it), in text, JSON, Markdown and CSV.
//!
//! JSON schema (numbers `f64`, `null` where undefined):
//!
//! ```text
//! model ("OLS, absorbed fixed effects"), dep_variable, formula,
//! fixed_effects [{column, levels, singleton_levels}], nobs, singletons,
//! cov_type (nonrobust|HC0|HC1|cluster), inference (iid|HC0|hetero (HC1)|CRV1 by COL),
//! cluster {column, groups}|null, df_k, df_t, ssc, alpha,
//! params {name: coef|null}, bse {…}, tvalues {…}, pvalues {…},
//! conf_int {name: [lower, upper]|null}, cov_params {name: {name: v|null}},
//! ssr, rmse, rsquared, rsquared_within, aliased [name], dependencies [text],
//! notes [str], rows {read, used, dropped}, inputs [{path, rows_read, rows_dropped}],
//! fitted_at, elapsed_s
//! ```

use super::json::{num, onum};
use super::{Format, RunInfo};
use crate::factors::AbsorbedResults;
use crate::numfmt::fmt_g;
use serde_json::{json, Map, Value};

/// Render an absorbed fit's report.
pub fn render(res: &AbsorbedResults, info: &RunInfo, format: Format) -> String {
    match format {
        Format::Text => text(res, info),
        Format::Json => to_json(res, info),
        Format::Markdown => markdown(res, info),
        Format::Csv => coef_csv(res),
    }
}

fn fixed_effects(res: &AbsorbedResults) -> String {
    res.fixed_effects.iter().map(|(c, l, _)| format!("{c} ({l} levels)")).collect::<Vec<_>>().join(", ")
}

fn observations(res: &AbsorbedResults) -> String {
    if res.singletons > 0 {
        format!("{} ({} singletons removed)", res.nobs, res.singletons)
    } else {
        res.nobs.to_string()
    }
}

fn cell(x: Option<f64>, width: usize) -> String {
    x.map_or_else(|| format!("{:>width$}", "nan"), |v| fmt_g(v, width, 6, false))
}

fn text(res: &AbsorbedResults, info: &RunInfo) -> String {
    let rule = "=".repeat(92);
    let mut s = String::new();
    s.push_str("Estimation:      OLS, absorbed fixed effects\n");
    s.push_str(&format!("Dep. var.:       {}\n", res.dep_variable));
    s.push_str(&format!("Fixed effects:   {}\n", fixed_effects(res)));
    s.push_str(&format!("Inference:       {}\n", res.inference()));
    s.push_str(&format!("Observations:    {}\n", observations(res)));
    s.push_str(&rule);
    s.push('\n');
    let (lo, hi) = (format!("{}%", 100.0 * res.alpha / 2.0), format!("{}%", 100.0 * (1.0 - res.alpha / 2.0)));
    s.push_str(&format!(
        "{:<24}{:>12}{:>12}{:>10}{:>10}{:>12}{:>12}\n",
        "Coefficient", "Estimate", "Std. Error", "t value", "Pr(>|t|)", lo, hi
    ));
    s.push_str(&"-".repeat(92));
    s.push('\n');
    for i in 0..res.names.len() {
        let (l, h) = res.conf_int[i].map_or((None, None), |(a, b)| (Some(a), Some(b)));
        s.push_str(&format!(
            "{:<24}{}{}{}{}{}{}\n",
            res.names[i],
            cell(res.params[i], 12),
            cell(res.bse[i], 12),
            res.tvalues[i].map_or_else(|| format!("{:>10}", "nan"), |t| format!("{t:>10.3}")),
            res.pvalues[i].map_or_else(|| format!("{:>10}", "nan"), |p| format!("{p:>10.3}")),
            cell(l, 12),
            cell(h, 12)
        ));
    }
    s.push_str(&rule);
    s.push('\n');
    s.push_str(&format!(
        "RMSE: {}  R2: {}  R2 Within: {}\n",
        fmt_g(res.rmse, 0, 6, false),
        fmt_g(res.rsquared, 0, 6, false),
        fmt_g(res.rsquared_within, 0, 6, false)
    ));
    for (i, n) in notes(res).iter().enumerate() {
        s.push_str(&format!("[{}] {n}\n", i + 1));
    }
    s.push_str(&format!("Rows: {} read, {} dropped.\n", info.rows_read, info.rows_dropped));
    s
}

/// The report's notes: aliasing, then the fit's own.
fn notes(res: &AbsorbedResults) -> Vec<String> {
    let mut v = Vec::new();
    if !res.dependencies.is_empty() {
        v.push(format!("Collinear with earlier columns, not estimated: {}.", res.dependencies.join("; ")));
    }
    v.extend(res.notes.iter().cloned());
    v
}

fn to_json(res: &AbsorbedResults, info: &RunInfo) -> String {
    let by_name = |v: &[Option<f64>]| -> Value {
        Value::Object(res.names.iter().zip(v).map(|(n, x)| (n.clone(), onum(*x))).collect::<Map<_, _>>())
    };
    let ci: Map<String, Value> = res
        .names
        .iter()
        .zip(&res.conf_int)
        .map(|(n, c)| (n.clone(), c.map_or(Value::Null, |(a, b)| json!([num(a), num(b)]))))
        .collect();
    let cov: Map<String, Value> =
        res.names.iter().zip(&res.cov_params).map(|(n, row)| (n.clone(), by_name(row))).collect();
    let v = json!({
        "model": "OLS, absorbed fixed effects",
        "dep_variable": res.dep_variable,
        "formula": info.formula,
        "fixed_effects": res.fixed_effects.iter().map(|(c, l, s)| json!({"column": c, "levels": l, "singleton_levels": s})).collect::<Vec<_>>(),
        "nobs": res.nobs,
        "singletons": res.singletons,
        "cov_type": res.cov_type.name(),
        "inference": res.inference(),
        "cluster": res.cluster.as_ref().map(|(c, g)| json!({"column": c, "groups": g})),
        "df_k": num(res.df_k),
        "df_t": num(res.df_t),
        "ssc": num(res.ssc),
        "alpha": res.alpha,
        "params": by_name(&res.params),
        "bse": by_name(&res.bse),
        "tvalues": by_name(&res.tvalues),
        "pvalues": by_name(&res.pvalues),
        "conf_int": ci,
        "cov_params": cov,
        "ssr": num(res.ssr),
        "rmse": num(res.rmse),
        "rsquared": num(res.rsquared),
        "rsquared_within": num(res.rsquared_within),
        "aliased": res.aliased,
        "dependencies": res.dependencies,
        "notes": res.notes,
        "rows": {"read": info.rows_read, "used": res.nobs, "dropped": info.rows_dropped},
        "inputs": info.inputs.iter().map(|i| json!({"path": i.path, "rows_read": i.rows_read, "rows_dropped": i.rows_dropped})).collect::<Vec<_>>(),
        "fitted_at": info.fitted_at,
        "elapsed_s": info.elapsed_s,
    });
    let mut s = serde_json::to_string_pretty(&v).expect("JSON values serialize");
    s.push('\n');
    s
}

fn markdown(res: &AbsorbedResults, info: &RunInfo) -> String {
    let mut s = format!("## OLS with absorbed fixed effects: `{}`\n\n", info.formula);
    s.push_str("| statistic | value |\n|---|---|\n");
    for (k, v) in [
        ("Fixed effects", fixed_effects(res)),
        ("Inference", res.inference()),
        ("Observations", observations(res)),
        ("RMSE", fmt_g(res.rmse, 0, 6, false)),
        ("R2", fmt_g(res.rsquared, 0, 6, false)),
        ("R2 Within", fmt_g(res.rsquared_within, 0, 6, false)),
    ] {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    s.push_str("\n| | Estimate | Std. Error | t value | Pr(>\\|t\\|) |\n|---|---:|---:|---:|---:|\n");
    let f = |x: Option<f64>| x.map_or("nan".into(), |v| fmt_g(v, 0, 6, false));
    for i in 0..res.names.len() {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            res.names[i],
            f(res.params[i]),
            f(res.bse[i]),
            f(res.tvalues[i]),
            f(res.pvalues[i])
        ));
    }
    let notes = notes(res);
    if !notes.is_empty() {
        s.push_str("\n**Notes**\n\n");
        for (i, n) in notes.iter().enumerate() {
            s.push_str(&format!("{}. {n}\n", i + 1));
        }
    }
    s.push_str(&format!("\nRows: {} read, {} dropped.\n", info.rows_read, info.rows_dropped));
    s
}

/// The coefficient table as CSV (the same columns as a plain fit's).
fn coef_csv(res: &AbsorbedResults) -> String {
    super::text::coef_table_csv(&super::text::CoefTable {
        alpha: res.alpha,
        names: &res.names,
        params: &res.params,
        bse: &res.bse,
        tvalues: &res.tvalues,
        pvalues: &res.pvalues,
        conf_int: &res.conf_int,
    })
}

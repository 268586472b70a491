//! JSON with statsmodels' attribute names, keys in a fixed order.
//!
//! Schema (all numbers `f64`; `null` where undefined or non-finite):
//!
//! ```text
//! model, dep_variable, formula, nobs, df_model, df_resid, rank, k_constant,
//! params {name: coef|null}, bse {…}, tvalues {…}, pvalues {…},
//! conf_int {name: [lower, upper]|null}, alpha,
//! ssr, ess, centered_tss, uncentered_tss, scale, mse_model, mse_resid,
//! mse_total, rsquared, rsquared_adj, fvalue, f_pvalue, llf, aic, bic,
//! cov_type, use_t, omnibus, prob_omnibus, skew, kurtosis, jarque_bera,
//! prob_jb, durbin_watson (null without a second pass), cov_params {name: {name: v}}, eigenvals [desc], condition_number,
//! singular_policy, aliased [name], dependencies [{column, terms {name: c}, text}],
//! diagnostics {scale_free_condition_number, vif {name: v}, condition_indices [],
//!              variance_proportions [[]], correlation {names [], matrix [[]]}},
//! (past [`FULL_COV_COLUMNS`](super::FULL_COV_COLUMNS) design columns,
//! without `--full-cov`: cov_params is null, and so are variance_proportions
//! and correlation unless the design has factors — then they, the
//! eigenvalues and condition numbers are of its numeric block; gramfit
//! notes say so),
//! notes [str], gramfit_notes [str],
//! rows {read, used, dropped}, inputs [{path, rows_read, rows_dropped}],
//! fitted_at (Unix seconds), elapsed_s
//! ```

use super::RunInfo;
use crate::results::OlsResults;
use serde_json::{json, Map, Value};

pub(super) fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

pub(super) fn onum(x: Option<f64>) -> Value {
    x.map_or(Value::Null, num)
}

fn by_name(names: &[String], v: &[Option<f64>]) -> Value {
    let mut m = Map::new();
    for (n, x) in names.iter().zip(v) {
        m.insert(n.clone(), onum(*x));
    }
    Value::Object(m)
}

/// The JSON object for a fit.
pub fn to_value(res: &OlsResults, info: &RunInfo) -> Value {
    let names = &res.names;
    let mut conf = Map::new();
    for (n, ci) in names.iter().zip(&res.conf_int) {
        conf.insert(n.clone(), ci.map_or(Value::Null, |(a, b)| json!([num(a), num(b)])));
    }
    // The O(p²) blocks, unless the design is too wide to print them.
    let full = info.full_cov || names.len() <= super::FULL_COV_COLUMNS;
    let cov = if full {
        let mut cov = Map::new();
        for (i, n) in names.iter().enumerate() {
            cov.insert(n.clone(), by_name(names, &res.cov_params[i]));
        }
        Value::Object(cov)
    } else {
        Value::Null
    };
    let deps: Vec<Value> = res
        .dependencies
        .iter()
        .map(|d| {
            let mut t = Map::new();
            for (n, c) in &d.terms {
                t.insert(n.clone(), num(*c));
            }
            json!({"column": d.column, "terms": t, "text": d.describe()})
        })
        .collect();
    let dg = &res.diagnostics;
    let corr: Vec<Value> =
        dg.correlation.iter().map(|row| Value::Array(row.iter().map(|x| onum(*x)).collect())).collect();
    // A wide design with factors has them of its numeric block: small.
    let (corr, proportions) = if full || dg.numeric_block.is_some() {
        let p: Vec<Value> =
            dg.variance_proportions.iter().map(|r| Value::Array(r.iter().map(|&x| num(x)).collect())).collect();
        (json!({"names": dg.corr_names, "matrix": corr}), Value::Array(p))
    } else {
        (Value::Null, Value::Null)
    };
    let mut gramfit_notes = res.gramfit_notes.clone();
    if !full {
        let what = if dg.numeric_block.is_some() {
            "cov_params"
        } else {
            "cov_params, the correlation matrix and the variance proportions"
        };
        gramfit_notes.push(format!(
            "{what} ({} columns: O(p²) numbers) are left out past {} columns; --full-cov writes them.",
            names.len(),
            super::FULL_COV_COLUMNS
        ));
    }
    let mut o = Map::new();
    o.insert("model".into(), json!(res.model));
    o.insert("dep_variable".into(), json!(res.dep_variable));
    o.insert("formula".into(), json!(info.formula));
    o.insert("nobs".into(), json!(res.nobs));
    o.insert("df_model".into(), num(res.df_model));
    o.insert("df_resid".into(), num(res.df_resid));
    o.insert("rank".into(), json!(res.rank));
    o.insert("k_constant".into(), json!(res.k_constant));
    o.insert("params".into(), by_name(names, &res.params));
    o.insert("bse".into(), by_name(names, &res.bse));
    o.insert("tvalues".into(), by_name(names, &res.tvalues));
    o.insert("pvalues".into(), by_name(names, &res.pvalues));
    o.insert("conf_int".into(), Value::Object(conf));
    o.insert("alpha".into(), num(res.alpha));
    for (k, v) in [
        ("ssr", res.ssr),
        ("ess", res.ess),
        ("centered_tss", res.centered_tss),
        ("uncentered_tss", res.uncentered_tss),
        ("scale", res.scale),
        ("mse_model", res.mse_model),
        ("mse_resid", res.mse_resid),
        ("mse_total", res.mse_total),
        ("rsquared", res.rsquared),
        ("rsquared_adj", res.rsquared_adj),
        ("fvalue", res.fvalue),
        ("f_pvalue", res.f_pvalue),
        ("llf", res.llf),
        ("aic", res.aic),
        ("bic", res.bic),
    ] {
        o.insert(k.into(), num(v));
    }
    o.insert("cov_type".into(), json!(res.cov_type.name()));
    o.insert("use_t".into(), json!(res.use_t));
    let r = res.residuals.as_ref().map(|s| &s.diagnostics);
    o.insert("omnibus".into(), r.map_or(Value::Null, |r| num(r.omnibus)));
    o.insert("prob_omnibus".into(), r.map_or(Value::Null, |r| num(r.prob_omnibus)));
    o.insert("skew".into(), r.map_or(Value::Null, |r| num(r.skew)));
    o.insert("kurtosis".into(), r.map_or(Value::Null, |r| num(r.kurtosis)));
    o.insert("jarque_bera".into(), r.map_or(Value::Null, |r| num(r.jarque_bera)));
    o.insert("prob_jb".into(), r.map_or(Value::Null, |r| num(r.prob_jb)));
    o.insert("durbin_watson".into(), r.map_or(Value::Null, |r| num(r.durbin_watson)));
    o.insert("cov_params".into(), cov);
    o.insert("eigenvals".into(), Value::Array(dg.eigenvals.iter().map(|&x| num(x)).collect()));
    o.insert("condition_number".into(), num(dg.condition_number));
    o.insert("singular_policy".into(), json!(res.policy));
    o.insert("aliased".into(), json!(res.aliased));
    o.insert("dependencies".into(), Value::Array(deps));
    o.insert(
        "diagnostics".into(),
        json!({
            "scale_free_condition_number": num(dg.scale_free_condition_number),
            "vif": by_name(names, &dg.vif),
            "condition_indices": dg.condition_indices.iter().map(|&x| num(x)).collect::<Vec<_>>(),
            "variance_proportions": proportions,
            "correlation": corr,
        }),
    );
    o.insert("notes".into(), json!(res.notes));
    o.insert("gramfit_notes".into(), json!(gramfit_notes));
    o.insert(
        "rows".into(),
        json!({"read": info.rows_read, "used": info.rows_read - info.rows_dropped, "dropped": info.rows_dropped}),
    );
    o.insert("inputs".into(), json!(info.inputs));
    o.insert("fitted_at".into(), json!(info.fitted_at));
    o.insert("elapsed_s".into(), num(info.elapsed_s));
    Value::Object(o)
}

pub fn to_json(res: &OlsResults, info: &RunInfo) -> String {
    let mut s = serde_json::to_string_pretty(&to_value(res, info)).unwrap_or_default();
    s.push('\n');
    s
}

//! Differential tests against statsmodels on the StreetEasy listings: every
//! number of the fit to 1e-8 relative.

use crate::common::{gramfit_json, rel_diff, streeteasy, tempdir};
use crate::peers;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const TOL: f64 = 1e-8;

const BASE: &str = "rent ~ building_age_yrs + min_to_subway + has_washer_dryer";
const FOURTEEN: &str = "rent ~ bedrooms + bathrooms + size_sqft + min_to_subway + floor + building_age_yrs + no_fee \
    + has_roofdeck + has_washer_dryer + has_doorman + has_elevator + has_dishwasher + has_patio + has_gym";

pub(crate) fn close(what: &str, ours: f64, theirs: f64, tol: f64) -> Result<(), String> {
    let d = rel_diff(ours, theirs);
    if d <= tol {
        Ok(())
    } else {
        Err(format!("{what}: gramfit {ours:e} vs statsmodels {theirs:e} (rel diff {d:.2e})"))
    }
}

pub(crate) fn close_p(what: &str, ours: f64, theirs: f64) -> Result<(), String> {
    // p-values below 1e-290 are zero for any practical purpose and beyond
    // the reach of double precision special functions in either program.
    if theirs < 1e-290 && ours < 1e-290 {
        return Ok(());
    }
    close(what, ours, theirs, TOL)
}

/// Compare gramfit's JSON with statsmodels' attributes.
pub fn compare(name: &str, ours: &Value, theirs: &Value, eigen: bool) {
    assert!(theirs.get("error").is_none(), "{name}: statsmodels failed: {}", theirs["error"]);
    let mut errs = Vec::new();
    let names: Vec<String> =
        theirs["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let our_names: Vec<String> = ours["params"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(our_names, names, "{name}: design column names and order");
    for key in [
        "nobs",
        "df_model",
        "df_resid",
        "rank",
        "k_constant",
        "ssr",
        "ess",
        "centered_tss",
        "uncentered_tss",
        "scale",
        "mse_model",
        "mse_resid",
        "mse_total",
        "rsquared",
        "rsquared_adj",
        "fvalue",
        "llf",
        "aic",
        "bic",
    ] {
        let (a, b) = (ours[key].as_f64(), theirs[key].as_f64());
        match (a, b) {
            (Some(a), Some(b)) => errs.extend(close(key, a, b, TOL).err()),
            _ => errs.push(format!("{key}: gramfit {:?} vs statsmodels {:?}", ours[key], theirs[key])),
        }
    }
    errs.extend(close_p("f_pvalue", ours["f_pvalue"].as_f64().unwrap(), theirs["f_pvalue"].as_f64().unwrap()).err());
    for (i, n) in names.iter().enumerate() {
        for key in ["params", "bse", "tvalues"] {
            let a = ours[key][n].as_f64().unwrap_or(f64::NAN);
            let b = theirs[key][i].as_f64().unwrap_or(f64::NAN);
            errs.extend(close(&format!("{key}[{n}]"), a, b, TOL).err());
        }
        errs.extend(
            close_p(
                &format!("pvalues[{n}]"),
                ours["pvalues"][n].as_f64().unwrap(),
                theirs["pvalues"][i].as_f64().unwrap(),
            )
            .err(),
        );
        for s in 0..2 {
            let a = ours["conf_int"][n][s].as_f64().unwrap();
            let b = theirs["conf_int"][i][s].as_f64().unwrap();
            errs.extend(close(&format!("conf_int[{n}][{s}]"), a, b, TOL).err());
        }
        for (j, m) in names.iter().enumerate() {
            let a = ours["cov_params"][n][m].as_f64().unwrap();
            let b = theirs["cov_params"][i][j].as_f64().unwrap();
            // Off-diagonal covariances can be ~0 by cancellation; compare
            // relative to the diagonal scale.
            let scale =
                (ours["cov_params"][n][n].as_f64().unwrap() * ours["cov_params"][m][m].as_f64().unwrap()).sqrt();
            if (a - b).abs() > TOL * scale {
                errs.push(format!("cov_params[{n}][{m}]: {a:e} vs {b:e}"));
            }
        }
    }
    if eigen {
        let ev: Vec<f64> = ours["eigenvals"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let tv: Vec<f64> = theirs["eigenvals"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(ev.len(), tv.len(), "{name}: number of eigenvalues");
        for (k, (a, b)) in ev.iter().zip(&tv).enumerate() {
            errs.extend(close(&format!("eigenvals[{k}]"), *a, *b, TOL).err());
        }
        errs.extend(
            close(
                "condition_number",
                ours["condition_number"].as_f64().unwrap(),
                theirs["condition_number"].as_f64().unwrap(),
                TOL,
            )
            .err(),
        );
    }
    assert!(errs.is_empty(), "{name}: {} differences from statsmodels:\n  {}", errs.len(), errs.join("\n  "));
}

fn fit_json(data: &Path, formula: &str, extra: &[&str]) -> Value {
    let mut args = vec!["fit", data.to_str().unwrap(), "--formula", formula, "--format", "json", "--quiet"];
    args.extend_from_slice(extra);
    gramfit_json(args)
}

/// The listings with the seed's two derived columns added.
pub fn with_seed_columns(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(streeteasy()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let m = header.iter().position(|h| *h == "min_to_subway").unwrap();
    let w = header.iter().position(|h| *h == "has_washer_dryer").unwrap();
    let mut out = format!("{},seconds_to_subway,no_washer_dryer\n", header.join(","));
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let mins: f64 = f[m].parse().unwrap();
        let wd: f64 = f[w].parse().unwrap();
        out.push_str(&format!("{l},{},{}\n", 60.0 * mins, 1.0 - wd));
    }
    let p = dir.join("streeteasy_seed.csv");
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn ols_wls_and_no_intercept_match_statsmodels() {
    let data = streeteasy();
    let d = data.to_str().unwrap();
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("base", BASE, None),
        ("fourteen", FOURTEEN, None),
        ("no_intercept", "rent ~ size_sqft + bedrooms + bathrooms - 1", None),
        ("wls", BASE, Some("1/(1+min_to_subway)")),
        ("borough", "rent ~ size_sqft + C(borough)", None),
        ("submarket", "rent ~ size_sqft + C(submarket)", None),
        ("log_response", "np.log(rent) ~ np.log(size_sqft) + bedrooms + C(borough, Treatment('Queens'))", None),
        ("interaction", "rent ~ size_sqft * C(borough) + I(size_sqft / 100) : has_doorman", None),
    ];
    let jobs: Vec<Value> = cases
        .iter()
        .map(|(n, f, w)| json!({"name": n, "kind": "fit", "data": d, "formula": f, "weights": w}))
        .collect();
    let theirs = peers::run(&json!(jobs));
    for (n, f, w) in &cases {
        let ours = match w {
            Some(w) => fit_json(&data, f, &["--weights", w]),
            None => fit_json(&data, f, &[]),
        };
        compare(n, &ours, &theirs[n], true);
    }
}

#[test]
fn singular_designs_drop_pinv_and_error() {
    let tmp = tempdir();
    let data = with_seed_columns(tmp.path());
    let d = data.to_str().unwrap();
    let sec = format!("{BASE} + seconds_to_subway");
    let trap = format!("{BASE} + no_washer_dryer");
    // A quotient term is the double nearest its value, not exactly the
    // column over 60: still aliased to working precision, as in
    // statsmodels.
    let hours = format!("{BASE} + I(min_to_subway / 60)");
    let jobs = json!([
        {"name": "sec", "kind": "fit", "data": d, "formula": sec},
        {"name": "trap", "kind": "fit", "data": d, "formula": trap},
        {"name": "hours", "kind": "fit", "data": d, "formula": hours},
    ]);
    let theirs = peers::run(&jobs);
    let base = fit_json(&data, BASE, &[]);
    for (name, f, aliased, dep) in [
        ("sec", &sec, "seconds_to_subway", "seconds_to_subway = 60 × min_to_subway"),
        ("trap", &trap, "no_washer_dryer", "no_washer_dryer = Intercept − has_washer_dryer"),
        ("hours", &hours, "I(min_to_subway / 60)", "I(min_to_subway / 60) = 1.666667e-2 × min_to_subway"),
    ] {
        // drop: rank 4, the aliased column named with its dependency, the
        // other coefficients are the base model's.
        let ours = fit_json(&data, f, &[]);
        assert_eq!(ours["rank"], 4, "{name}");
        assert_eq!(ours["aliased"], json!([aliased]), "{name}");
        assert!(ours["params"][aliased].is_null(), "{name}: aliased coefficient is null");
        assert_eq!(ours["dependencies"][0]["text"], dep, "{name}");
        assert!(
            ours["gramfit_notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains(dep)),
            "{name}: note names the dependency"
        );
        for (k, v) in base["params"].as_object().unwrap() {
            let d = rel_diff(ours["params"][k].as_f64().unwrap(), v.as_f64().unwrap());
            assert!(d < 1e-10, "{name}: drop coefficient {k} differs from the base model by {d:e}");
        }
        // pinv: statsmodels' minimum-norm solution (eigenvalues of a
        // singular design are rounding noise in both, so not compared).
        let ours = fit_json(&data, f, &["--singular", "pinv"]);
        compare(name, &ours, &theirs[name], false);
        // error: fails naming the dependency.
        let out = crate::common::gramfit(["fit", d, "--formula", f, "--singular", "error"]);
        assert_eq!(out.status.code(), Some(1), "{name}: exit code");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(dep), "{name}: error names the dependency: {err}");
    }
}

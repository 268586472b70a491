//! CSV as R, Excel and pandas write it: missing-value tokens (`NA`, `N/A`,
//! empty cells, in numeric and text columns), semicolons with decimal
//! commas, tabs — each read as pandas' `read_csv` reads it, so that the fit
//! equals statsmodels' on the data frame pandas makes.

use crate::common::{gramfit, gramfit_json, streeteasy, tempdir};
use crate::peers;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const FORMULA: &str = "rent ~ size_sqft + min_to_subway + building_age_yrs + C(bedrooms) + C(borough)";

/// The listings with gaps written the way R and spreadsheets write them:
/// `NA` and `N/A` in numeric columns, empty cells, a missing borough; a
/// whole-number column (bedrooms) with a gap, which pandas reads as floats
/// (so its levels are named `1.0`, `2.0`).
fn with_gaps(dir: &Path, sep: char, decimal_comma: bool) -> PathBuf {
    let text = std::fs::read_to_string(streeteasy()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let (size, sub, age, bed, boro, rent) =
        (col("size_sqft"), col("min_to_subway"), col("building_age_yrs"), col("bedrooms"), col("borough"), col("rent"));
    let mut out = header.join(&sep.to_string());
    out.push('\n');
    for (i, line) in lines.enumerate() {
        // Neighborhood names hold no commas in this file.
        let mut f: Vec<String> = line.split(',').map(String::from).collect();
        match i % 23 {
            3 => f[size] = "NA".into(),
            7 => f[sub] = "N/A".into(),
            11 => f[age] = String::new(),
            13 => f[boro] = "NA".into(),
            17 => f[bed] = "NaN".into(),
            19 => f[sub] = "null".into(),
            _ => {}
        }
        if decimal_comma {
            // Rents in cents, written with a decimal comma.
            let cents = f[rent].parse::<f64>().unwrap() + (i % 100) as f64 / 100.0;
            f[rent] = format!("{cents:.2}").replace('.', ",");
        }
        out.push_str(&f.join(&sep.to_string()));
        out.push('\n');
    }
    let p = dir.join(if sep == ';' { "gaps-eu.csv" } else { "gaps.csv" });
    std::fs::write(&p, out).unwrap();
    p
}

fn fit(data: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["fit", data.to_str().unwrap(), "-f", FORMULA, "--format", "json", "-q"];
    args.extend_from_slice(extra);
    gramfit_json(args)
}

#[test]
fn missing_tokens_and_european_csv_fit_as_pandas_and_statsmodels_do() {
    let tmp = tempdir();
    let us = with_gaps(tmp.path(), ',', false);
    let eu = with_gaps(tmp.path(), ';', true);
    let theirs = peers::run(&json!([
        {"name": "us", "kind": "fit", "data": us.to_str().unwrap(), "formula": FORMULA},
        {"name": "eu", "kind": "fit", "data": eu.to_str().unwrap(), "formula": FORMULA,
         "read_csv": {"sep": ";", "decimal": ","}},
    ]));
    let ours = fit(&us, &[]);
    // pandas drops 6 kinds of gap: the row counts must agree exactly.
    assert_eq!(ours["nobs"].as_f64(), theirs["us"]["nobs"].as_f64());
    assert!(ours["params"].get("C(bedrooms)[T.1.0]").is_some(), "{}", ours["params"]);
    crate::statsmodels::compare("us", &ours, &theirs["us"], true);
    // Semicolons sniffed from the header, or named; a decimal comma.
    let sniffed = fit(&eu, &["--decimal", ","]);
    let named = fit(&eu, &["--decimal", ",", "--delimiter", ";"]);
    crate::statsmodels::compare("eu", &sniffed, &theirs["eu"], true);
    assert_eq!(sniffed["params"], named["params"]);
}

#[test]
fn r_style_na_keeps_a_numeric_column_numeric() {
    // The six rows: with `NA` read as text, `x` became a factor
    // (x[T.4], x[T.NA], …) and the fit another model, exit 0.
    let tmp = tempdir();
    let p = tmp.path().join("r.csv");
    std::fs::write(&p, "y,x,g\n1,2,a\n2,3,b\n3,NA,a\n4,4,b\n5,5,a\n7,7,b\n").unwrap();
    let j = gramfit_json(["fit", p.to_str().unwrap(), "-f", "y ~ x", "--format", "json", "-q"]);
    assert_eq!(j["params"].as_object().unwrap().keys().collect::<Vec<_>>(), ["Intercept", "x"]);
    assert_eq!(j["nobs"], 5);
    // With only empty cells missing, NA is text: the error names the values
    // that made the column text and the way out.
    let out = gramfit(["fit", p.to_str().unwrap(), "-f", "y ~ x + g", "--na-values", "", "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("column 'x' holds numbers but also the text 'NA' (line 4)"), "{err}");
    assert!(err.contains("--na-values"), "{err}");
    // A list of one's own replaces pandas' list.
    let j = gramfit_json(["fit", p.to_str().unwrap(), "-f", "y ~ x", "--format", "json", "-q", "--na-values", "NA,-"]);
    assert_eq!(j["nobs"], 5);
}

#[test]
fn a_decimal_comma_file_without_the_option_says_how_to_read_it() {
    let tmp = tempdir();
    let eu = with_gaps(tmp.path(), ';', true);
    let out = gramfit(["fit", eu.to_str().unwrap(), "-f", FORMULA, "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("column 'rent'") && err.contains("--decimal ','"), "{err}");
}

#[test]
fn reading_options_are_saved_and_used_by_update_and_diagnose() {
    let tmp = tempdir();
    let eu = with_gaps(tmp.path(), ';', true);
    let state = tmp.path().join("eu.gramfit");
    let s = state.to_str().unwrap();
    let whole = fit(&eu, &["--decimal", ","]);
    // Fit the first half, then update with the second, the options coming
    // from the state.
    let text = std::fs::read_to_string(&eu).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = (tmp.path().join("a.csv"), tmp.path().join("b.csv"));
    std::fs::write(&a, format!("{}\n", lines[..2501].join("\n"))).unwrap();
    std::fs::write(&b, format!("{}\n{}\n", lines[0], lines[2501..].join("\n"))).unwrap();
    let first = gramfit(["fit", a.to_str().unwrap(), "-f", FORMULA, "--decimal", ",", "--save", s, "-q"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let j = gramfit_json(["update", s, b.to_str().unwrap(), "--format", "json", "-q"]);
    assert_eq!(j["nobs"], whole["nobs"]);
    for (k, v) in whole["params"].as_object().unwrap() {
        let (x, y) = (v.as_f64().unwrap(), j["params"][k].as_f64().unwrap());
        assert!(crate::common::rel_diff(x, y) < 1e-10, "{k}: {x} vs {y}");
    }
    let d = gramfit_json(["diagnose", s, "--format", "json", "-q"]);
    assert!(d["skew"].is_number());
}

#[test]
fn batch_configs_take_the_reading_options() {
    let tmp = tempdir();
    let eu = with_gaps(tmp.path(), ';', true);
    let cfg = tmp.path().join("job.toml");
    std::fs::write(
        &cfg,
        format!(
            "inputs = [\"{}\"]\nformula = \"{FORMULA}\"\ndecimal = \",\"\ndelimiter = \";\"\nna_values = [\"\", \"NA\", \"N/A\", \"NaN\", \"null\"]\nformat = \"json\"\n",
            eu.file_name().unwrap().to_str().unwrap()
        ),
    )
    .unwrap();
    let j = gramfit_json(["run", cfg.to_str().unwrap(), "-q"]);
    assert_eq!(j["params"], fit(&eu, &["--decimal", ","])["params"]);
}

//! Absorbed fixed effects (`y ~ x | fe1 + fe2`): slopes, standard errors
//! (iid, HC1, CRV1 with pyfixest's small-sample corrections) and R² equal
//! pyfixest's on the StreetEasy listings and on a generated file with two
//! factors, weights and missing levels; the slopes equal the dummy
//! model's; the numbers do not depend on the thread count; what cannot be
//! absorbed is refused with a clear message.

use crate::common::{gramfit, gramfit_json, rel_diff, streeteasy, tempdir};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

/// A generated table: `fe1` with 700 string levels (some rows without
/// one), `fe2` with 40 integer levels, decimals, weights, a few singleton
/// levels of `fe1`, and `zc`, constant within the levels of `fe1`.
fn write_two_factors(csv: &Path) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(csv).unwrap());
    writeln!(w, "y,x1,x2,fe1,fe2,w,zc").unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..30_000u64 {
        let f1 = if i < 5 { 690 + i } else { (next() * 690.0) as u64 };
        let f2 = (next() * 40.0) as u64;
        let (a1, a2) = ((f1 as f64 * 0.37).sin() * 3.0, (f2 as f64).sqrt());
        let x1 = 10.0 + 4.0 * (next() - 0.5) + 0.1 * a1;
        let x2 = 6.0 * next() * next() + 0.2 * a2;
        let e = (next() + next() + next() - 1.5) * (1.0 + 0.1 * x2);
        let y = 1.5 * x1 - 0.7 * x2 + a1 + a2 + e;
        let fe1 = if i % 997 == 3 { String::new() } else { format!("f{f1}") };
        // zc: a number per fe1 level (its square root, three decimals).
        writeln!(w, "{y:.4},{x1:.4},{x2:.3},{fe1},{f2},{:.2},{:.3}", 0.5 + 1.5 * next(), (f1 as f64).sqrt()).unwrap();
    }
}

fn pyfixest(jobs: &Value) -> Value {
    let tmp = tempdir();
    let spec = tmp.path().join("spec.json");
    std::fs::write(&spec, serde_json::to_vec(jobs).unwrap()).unwrap();
    crate::peers::run_script("pyfixest_fit.py", &[&spec], "pyfixest and pandas")
}

/// gramfit's JSON report against pyfixest's numbers: coefficients to
/// 1e-8, standard errors, t and p values to 1e-6 (relative).
fn assert_matches(g: &Value, p: &Value, what: &str) {
    let names: Vec<&str> = p["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    // The same slopes estimated (patsy orders the terms, formulaic keeps
    // the written order: compared by name).
    let mut ours: Vec<&str> =
        g["params"].as_object().unwrap().iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k.as_str()).collect();
    let mut theirs = names.clone();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs, "{what}: estimated slopes");
    for (i, name) in names.iter().enumerate() {
        for (key, tol) in [("params", 1e-8), ("bse", 1e-6), ("tvalues", 1e-6)] {
            let (a, b) = (g[key][name].as_f64().unwrap(), p[key][i].as_f64().unwrap());
            assert!(rel_diff(a, b) < tol, "{what}: {key}[{name}] {a} vs pyfixest {b}");
        }
        let (a, b) = (g["pvalues"][name].as_f64().unwrap(), p["pvalues"][i].as_f64().unwrap());
        assert!((a - b).abs() < 1e-6 * b.max(1e-10), "{what}: p[{name}] {a} vs pyfixest {b}");
    }
    assert_eq!(g["nobs"], p["nobs"], "{what}: rows");
    for key in ["rsquared", "rsquared_within"] {
        let (a, b) = (g[key].as_f64().unwrap(), p[key].as_f64().unwrap());
        assert!(rel_diff(a, b) < 1e-9, "{what}: {key} {a} vs pyfixest {b}");
    }
}

fn fit_json(data: &Path, formula: &str, extra: &[&str]) -> Value {
    let mut args = vec!["fit", data.to_str().unwrap(), "-f", formula, "--format", "json", "-q"];
    args.extend_from_slice(extra);
    gramfit_json(args)
}

#[test]
fn listings_with_a_neighborhood_effect_equal_pyfixest() {
    let se = streeteasy();
    let data = se.to_str().unwrap();
    let f = "rent ~ size_sqft + bedrooms + min_to_subway + has_doorman | neighborhood";
    let fw = "rent ~ size_sqft + bedrooms + C(borough) | neighborhood";
    let jobs = json!([
        {"name": "iid", "data": data, "formula": f, "vcov": "iid"},
        {"name": "crv", "data": data, "formula": f, "vcov": {"CRV1": "neighborhood"}},
        {"name": "crv_borough", "data": data, "formula": f, "vcov": {"CRV1": "borough"}},
        {"name": "hetero", "data": data, "formula": f, "vcov": "hetero"},
        {"name": "borough", "data": data, "formula": fw, "vcov": "iid"},
    ]);
    let p = pyfixest(&jobs);
    assert_matches(&fit_json(&se, f, &[]), &p["iid"], "iid");
    let crv = fit_json(&se, f, &["--cov-type", "cluster"]);
    assert_eq!(crv["inference"], "CRV1 by neighborhood");
    assert_matches(&crv, &p["crv"], "CRV1 by neighborhood (the default cluster)");
    // One neighborhood spans two boroughs: the absorbed levels are not
    // nested in these clusters (checked on the data) and stay counted.
    assert_matches(
        &fit_json(&se, f, &["--cov-type", "cluster", "--cluster", "borough"]),
        &p["crv_borough"],
        "CRV1 by borough",
    );
    assert_matches(&fit_json(&se, f, &["--cov-type", "HC1"]), &p["hetero"], "hetero");
    // All but one neighborhood lie in one borough: one borough dummy is
    // collinear with the absorbed levels, dropped by both, and said so.
    let borough = fit_json(&se, fw, &[]);
    assert_matches(&borough, &p["borough"], "C(borough) beside neighborhoods");
    assert_eq!(borough["aliased"], json!(["C(borough)[T.Queens]"]));
}

#[test]
fn two_absorbed_factors_with_weights_equal_pyfixest() {
    let dir = tempdir();
    let csv = dir.path().join("two.csv");
    write_two_factors(&csv);
    let data = csv.to_str().unwrap();
    let f = "y ~ x1 + x2 | fe1 + fe2";
    let jobs = json!([
        {"name": "iid", "data": data, "formula": f, "vcov": "iid"},
        {"name": "hetero", "data": data, "formula": f, "vcov": "hetero"},
        {"name": "crv1", "data": data, "formula": f, "vcov": {"CRV1": "fe1"}},
        {"name": "crv2", "data": data, "formula": f, "vcov": {"CRV1": "fe2"}},
        {"name": "weighted", "data": data, "formula": f, "vcov": {"CRV1": "fe1"}, "weights": "w"},
        {"name": "reversed", "data": data, "formula": "y ~ x1 + x2 | fe2 + fe1", "vcov": "iid"},
        {"name": "level_constant", "data": data, "formula": "y ~ x1 + zc + x2 | fe1", "vcov": "iid"},
    ]);
    let p = pyfixest(&jobs);
    let iid = fit_json(&csv, f, &[]);
    assert_matches(&iid, &p["iid"], "two factors, iid");
    // Rows 0–4 have levels of their own; row 3 has no fe1 level at all.
    assert_eq!(iid["singletons"], 4, "the singleton levels are removed");
    assert_eq!(iid["rows"]["dropped"], 31, "rows without an fe1 level");
    assert_matches(&fit_json(&csv, f, &["--cov-type", "HC1"]), &p["hetero"], "two factors, hetero");
    assert_matches(&fit_json(&csv, f, &["--cov-type", "cluster"]), &p["crv1"], "two factors, CRV1 by fe1");
    assert_matches(&fit_json(&csv, f, &["--cov-type", "cluster", "--cluster", "fe2"]), &p["crv2"], "CRV1 by fe2");
    let weighted = fit_json(&csv, f, &["--cov-type", "cluster", "--weights", "w"]);
    assert_matches(&weighted, &p["weighted"], "two factors, weighted, CRV1");
    assert_matches(&fit_json(&csv, "y ~ x1 + x2 | fe2 + fe1", &[]), &p["reversed"], "factors in the other order");
    // A column constant within the levels is collinear with them: not
    // estimated (its within sum of squares is rounding dust, which must
    // not pass for a column), and the other slopes' degrees of freedom
    // do not count it.
    let lc = fit_json(&csv, "y ~ x1 + zc + x2 | fe1", &[]);
    assert_matches(&lc, &p["level_constant"], "a column constant within the levels");
    assert_eq!(lc["aliased"], json!(["zc"]));
    assert!(
        lc["notes"][0].as_str().unwrap().starts_with("zc is constant within the absorbed levels"),
        "{}",
        lc["notes"]
    );
}

/// The absorbed slopes are the dummy model's (Frisch–Waugh–Lovell), and
/// so are their iid standard errors: singletons leave one row and one
/// level each, so the residual degrees of freedom agree.
#[test]
fn absorbed_slopes_equal_the_dummy_models() {
    let se = streeteasy();
    let x = "size_sqft + bedrooms + min_to_subway";
    let fe = fit_json(&se, &format!("rent ~ {x} | neighborhood"), &[]);
    let dense = fit_json(&se, &format!("rent ~ {x} + C(neighborhood)"), &["--no-second-pass"]);
    for name in ["size_sqft", "bedrooms", "min_to_subway"] {
        for key in ["params", "bse"] {
            let (a, b) = (fe[key][name].as_f64().unwrap(), dense[key][name].as_f64().unwrap());
            assert!(rel_diff(a, b) < 1e-9, "{key}[{name}]: absorbed {a}, dummies {b}");
        }
    }
    assert!(
        rel_diff(fe["ssr"].as_f64().unwrap(), dense["ssr"].as_f64().unwrap()) < 1e-9,
        "the singletons' residuals are zero"
    );
}

#[test]
fn absorbed_fits_do_not_depend_on_the_thread_count() {
    let dir = tempdir();
    let csv = dir.path().join("two.csv");
    write_two_factors(&csv);
    let strip = |mut v: Value| {
        for k in ["elapsed_s", "fitted_at"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let f = "y ~ x1 + x2 | fe1 + fe2";
    let one = strip(fit_json(&csv, f, &["--threads", "1", "--batch-size", "1000", "--cov-type", "cluster"]));
    let two = strip(fit_json(&csv, f, &["--threads", "2", "--batch-size", "1000", "--cov-type", "cluster"]));
    assert_eq!(one, two);
}

#[test]
fn what_cannot_be_absorbed_is_refused_clearly() {
    let se = streeteasy();
    let data = se.to_str().unwrap();
    let err = |args: &[&str]| -> (i32, String) {
        let mut all = vec!["fit", data, "-q"];
        all.extend_from_slice(args);
        let out = gramfit(all);
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, msg) = err(&["-f", "rent ~ size_sqft | neighbourhood"]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("fixed effect: no column named 'neighbourhood' in the input; did you mean 'neighborhood'?"),
        "{msg}"
    );
    let (code, msg) = err(&["-f", "rent ~ size_sqft | neighborhood", "--cov-type", "HC3"]);
    assert_eq!(code, 2);
    assert!(msg.contains("--cov-type HC3 is not available with absorbed fixed effects"), "{msg}");
    let (code, msg) = err(&["-f", "rent ~ size_sqft | neighborhood", "--follow", "somewhere"]);
    assert_eq!(code, 2);
    assert!(msg.contains("--follow is not supported yet with absorbed fixed effects ('| neighborhood')"), "{msg}");
    let (code, msg) = err(&["-f", "rent ~ size_sqft | neighborhood + borough + submarket"]);
    assert_eq!(code, 2);
    assert!(msg.contains("at most 2 fixed effects can be absorbed, not 3"), "{msg}");
    // A row without a level is dropped and counted, or refused with
    // --missing error, naming the column and the line.
    let dir = tempdir();
    let csv = dir.path().join("gap.csv");
    std::fs::write(&csv, "y,x,g\n1,2,a\n2,3,a\n3,1,\n4,5,b\n5,4,b\n").unwrap();
    let out = gramfit(["fit", csv.to_str().unwrap(), "-q", "-f", "y ~ x | g", "--missing", "error"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("column 'g' is missing a value at") && msg.contains("line 4"), "{msg}");
    let ok = fit_json(&csv, "y ~ x | g", &[]);
    assert_eq!((ok["nobs"].as_u64(), ok["rows"]["dropped"].as_u64()), (Some(4), Some(1)));
    // Paths that do not absorb say so rather than misread the '|'.
    let (code, msg) = err(&["-f", "rent ~ size_sqft | neighborhood", "--by", "borough"]);
    assert_eq!(code, 2);
    assert!(msg.contains("--by is not supported yet"), "{msg}");
}

/// Two factors with more levels than the dense elimination takes: refused
/// with the limit named, before any slope is reported.
#[test]
fn two_large_factors_are_refused_with_the_limit() {
    let dir = tempdir();
    let csv = dir.path().join("big.csv");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    writeln!(w, "y,x,a,b").unwrap();
    for i in 0..9_000u64 {
        writeln!(w, "{},{},{},{}", i % 13, (i * 7) % 11, i % 3_000, (i * 7 + 1) % 2_999).unwrap();
    }
    drop(w);
    let out = gramfit(["fit", csv.to_str().unwrap(), "-q", "-f", "y ~ x | a + b"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("the smaller one's levels are eliminated densely, which takes at most 2000 levels"), "{msg}");
    assert!(out.stdout.is_empty());
}

/// A saved absorbed fit is kept current like any other: updating the fit
/// of the first rows with the rest, or merging the fits of the two parts,
/// gives the fit of the whole; retracting the rest gives the first part's.
/// The state is written as format version 3 (a build that reads up to 2
/// refuses it rather than fit without the fixed effects); `diagnose` says
/// it cannot use it yet.
#[test]
fn saved_absorbed_fits_update_merge_and_retract() {
    let dir = tempdir();
    let whole = dir.path().join("whole.csv");
    write_two_factors(&whole);
    let text = std::fs::read_to_string(&whole).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    std::fs::write(&a, format!("{}\n", lines[..20_001].join("\n"))).unwrap();
    std::fs::write(&b, format!("{}\n{}\n", lines[0], lines[20_001..].join("\n"))).unwrap();
    let f = "y ~ x1 + x2 | fe1 + fe2";
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let close = |x: &Value, y: &Value, what: &str| {
        for key in ["params", "bse"] {
            for name in ["x1", "x2"] {
                let (u, v) = (x[key][name].as_f64().unwrap(), y[key][name].as_f64().unwrap());
                assert!(rel_diff(u, v) < 1e-12, "{what}: {key}[{name}] {u} vs {v}");
            }
        }
        for key in ["nobs", "singletons", "fixed_effects"] {
            assert_eq!(x[key], y[key], "{what}: {key}");
        }
    };
    let all = fit_json(&whole, f, &[]);
    let first = fit_json(&a, f, &["--save", &p("s.gramfit")]);
    let bytes = std::fs::read(p("s.gramfit")).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), gramfit::state::FORMAT_VERSION);
    let updated = gramfit_json(["update", &p("s.gramfit"), b.to_str().unwrap(), "--format", "json", "-q"]);
    close(&updated, &all, "update");
    fit_json(&a, f, &["--save", &p("sa.gramfit")]);
    fit_json(&b, f, &["--save", &p("sb.gramfit")]);
    let merged = gramfit_json(["merge", &p("sa.gramfit"), &p("sb.gramfit"), "-o", &p("m.gramfit"), "--format", "json"]);
    close(&merged, &all, "merge");
    let summary = gramfit_json(["summary", &p("m.gramfit"), "--format", "json"]);
    close(&summary, &merged, "summary of the merged state");
    let back = gramfit_json(["retract", &p("s.gramfit"), b.to_str().unwrap(), "--format", "json", "-q"]);
    close(&back, &first, "retract");
    let out = gramfit(["diagnose", &p("s.gramfit")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absorbed fixed effects ('| fe') are not supported here yet"));
    let out = gramfit(["summary", &p("s.gramfit"), "--cov-type", "cluster"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cov-type cluster needs a pass over the data"));
}

/// Predictions from a saved absorbed fit are the dummy model's fitted
/// values: equal to pyfixest's (its fixed effects solved to 1e-14) on
/// every row, null where it has none (a row without a level, a singleton
/// level's row); intervals are refused (nothing estimates the effects'
/// variance).
#[test]
fn predictions_from_an_absorbed_state_equal_pyfixest() {
    let dir = tempdir();
    let csv = dir.path().join("two.csv");
    write_two_factors(&csv);
    let data = csv.to_str().unwrap();
    let se = streeteasy();
    let jobs = json!([
        {"name": "two", "data": data, "formula": "y ~ x1 + x2 | fe1 + fe2", "vcov": "iid", "predict": true},
        {"name": "one", "data": se.to_str().unwrap(), "formula": "rent ~ size_sqft + bedrooms | neighborhood", "vcov": "iid", "predict": true},
    ]);
    let p = pyfixest(&jobs);
    for (name, file, formula) in [
        ("two", csv.clone(), "y ~ x1 + x2 | fe1 + fe2"),
        ("one", se.clone(), "rent ~ size_sqft + bedrooms | neighborhood"),
    ] {
        let state = dir.path().join(format!("{name}.gramfit"));
        fit_json(&file, formula, &["--save", state.to_str().unwrap()]);
        let out = gramfit(["predict", state.to_str().unwrap(), file.to_str().unwrap(), "--interval", "none", "-q"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        // mean, then resid (the response is in the file).
        assert!(text.starts_with("mean,resid\n"), "{name}: {}", &text[..40]);
        let ours: Vec<Option<f64>> = text.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().ok()).collect();
        let theirs: Vec<Option<f64>> = p[name]["predict"].as_array().unwrap().iter().map(|v| v.as_f64()).collect();
        assert_eq!(ours.len(), theirs.len(), "{name}: rows");
        let mut nulls = 0;
        for (r, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => assert!(rel_diff(*a, *b) < 1e-9, "{name} row {r}: {a} vs pyfixest {b}"),
                (None, None) => nulls += 1,
                _ => panic!("{name} row {r}: {a:?} vs pyfixest {b:?}"),
            }
        }
        assert!(nulls > 0, "{name}: the rows without an estimated level are null");
    }
    let state = dir.path().join("two.gramfit");
    let out = gramfit(["predict", state.to_str().unwrap(), data]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("an absorbed fit (`| fe1 + fe2`) estimates no variance of its fixed effects"), "{err}");
}

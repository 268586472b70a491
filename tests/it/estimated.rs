//! A plain model's factor with many levels, estimated by blocks
//! (`gramfit::factors::estimated`): the same numbers as the dense dummy
//! model (forced onto small factors with `GRAMFIT_DENSE_LEVELS`), and as
//! statsmodels past the threshold.

use crate::common::{bin, json_differences, streeteasy, tempdir};
use crate::peers;
use crate::statsmodels::{close, compare};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// `gramfit fit … --format json` with `GRAMFIT_DENSE_LEVELS` set (None:
/// the default threshold).
fn fit(data: &Path, formula: &str, dense_levels: Option<usize>, extra: &[&str]) -> Value {
    let mut cmd = Command::new(bin());
    cmd.args(["fit", data.to_str().unwrap(), "--formula", formula, "--format", "json", "--quiet"]).args(extra);
    match dense_levels {
        Some(l) => cmd.env("GRAMFIT_DENSE_LEVELS", l.to_string()),
        None => cmd.env_remove("GRAMFIT_DENSE_LEVELS"),
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{formula}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn by_blocks(report: &Value) -> bool {
    report["gramfit_notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("levels (more than"))
}

/// Everything but the collinearity diagnostics (of the numeric block on
/// the block path) and the dependencies' terms (in the columns with the
/// levels taken out) equals the dense fit's: to 1e-10, and robust
/// covariances to 1e-8.
const NOT_COMPARED: &[&str] = &[
    "elapsed_s",
    "fitted_at",
    "gramfit_notes",
    "notes",
    "diagnostics",
    "eigenvals",
    "condition_number",
    "dependencies",
];

#[test]
fn block_fit_equals_the_dense_fit_on_the_listings() {
    let data = streeteasy();
    let cases: &[(&str, &[&str])] = &[
        ("rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + C(neighborhood)", &[]),
        ("rent ~ size_sqft + bedrooms + C(neighborhood)", &["--weights", "1/(1+min_to_subway)"]),
        ("np.log(rent) ~ size_sqft + I(size_sqft**2) + C(neighborhood, Treatment('Soho')) + has_doorman", &[]),
        // Another factor beside it, an interaction, and no second pass.
        ("rent ~ size_sqft + C(borough):bedrooms + C(neighborhood) + C(submarket)", &[]),
        ("rent ~ size_sqft + C(neighborhood) + building_age_yrs", &["--no-second-pass"]),
        // Borough is nearly nested in neighborhood: aliased columns.
        ("rent ~ C(neighborhood) + size_sqft + C(borough)", &[]),
        // Robust covariances from the level sums of the second pass.
        ("rent ~ size_sqft + bedrooms + C(neighborhood)", &["--cov-type", "cluster", "--cluster", "borough"]),
        ("rent ~ size_sqft + C(neighborhood)", &["--cov-type", "cluster", "--cluster", "neighborhood"]),
        ("rent ~ size_sqft + bedrooms + C(neighborhood)", &["--cov-type", "HC0"]),
        ("rent ~ size_sqft + bedrooms + C(neighborhood)", &["--cov-type", "HC1"]),
        ("rent ~ size_sqft + bedrooms + C(neighborhood)", &["--cov-type", "HC2"]),
        ("rent ~ size_sqft + bedrooms + C(neighborhood)", &["--cov-type", "HC3", "--weights", "1/(1+min_to_subway)"]),
    ];
    for (formula, extra) in cases {
        let dense = fit(&data, formula, None, extra);
        let blocks = fit(&data, formula, Some(2), extra);
        assert!(!by_blocks(&dense) && by_blocks(&blocks), "{formula}: which path ran");
        // A robust covariance near zero by cancellation keeps ~1e-9 of its
        // size.
        let tol = if extra.contains(&"--cov-type") { 1e-8 } else { 1e-10 };
        let diffs = json_differences(&dense, &blocks, tol, NOT_COMPARED);
        assert!(diffs.is_empty(), "{formula} {extra:?}: {} differences:\n  {}", diffs.len(), diffs.join("\n  "));
        assert_eq!(dense["aliased"], blocks["aliased"], "{formula}");
    }
}

#[test]
fn levels_that_pass_the_limit_only_in_total_start_the_fit_over() {
    // Rows sorted by neighborhood and small batches: each work unit sees
    // a few levels, the whole file more than the limit.
    let tmp = tempdir();
    let text = std::fs::read_to_string(streeteasy()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let col = header.split(',').position(|h| h == "neighborhood").unwrap();
    let mut rows: Vec<&str> = lines.collect();
    rows.sort_by_key(|l| l.split(',').nth(col).unwrap().to_string());
    let sorted = tmp.path().join("sorted.csv");
    std::fs::write(&sorted, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let formula = "rent ~ size_sqft + bedrooms + C(neighborhood)";
    let dense = fit(&sorted, formula, None, &[]);
    let blocks = fit(&sorted, formula, Some(40), &["--batch-size", "64", "--threads", "2"]);
    assert!(by_blocks(&blocks));
    let diffs = json_differences(&dense, &blocks, 1e-9, NOT_COMPARED);
    assert!(diffs.is_empty(), "{} differences:\n  {}", diffs.len(), diffs.join("\n  "));
}

/// A CSV of `n` rows with a factor of `levels` levels (with `singleton`,
/// the last has one row, and a few values are missing), two real-valued
/// predictors and a cluster column `c` across the levels.
pub(crate) fn many_levels_csv(path: &Path, n: usize, levels: usize, singleton: bool) {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = String::from("y,x1,x2,g,c\n");
    for i in 0..n {
        // The last level has one row (the last); the others share the rest.
        let g = if singleton && i == n - 1 { levels - 1 } else { i % (levels - usize::from(singleton)) };
        let x1 = (next() * 1000.0).round() / 100.0 + g as f64 * 0.01;
        let x2 = next() * 3.7 - 1.1;
        let effect = ((g * 7919) % 101) as f64 / 10.0;
        let y = 2.5 + 0.75 * x1 - 1.3 * x2 + effect + (next() - 0.5) * 4.0;
        let x2 = if singleton && i % 997 == 5 { String::new() } else { format!("{x2:.6}") };
        out.push_str(&format!("{y:.4},{x1},{x2},L{g:04},K{}\n", (i * 31 + g) % 997));
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_factor_past_the_threshold_matches_statsmodels() {
    let tmp = tempdir();
    let data = tmp.path().join("levels.csv");
    many_levels_csv(&data, 6000, 420, true);
    let formula = "y ~ x1 + x2 + C(g)";
    let ours = fit(&data, formula, None, &["--full-cov"]);
    assert!(by_blocks(&ours), "420 levels take the block path by default");
    let jobs = json!([{"name": "levels", "kind": "fit", "data": data.to_str().unwrap(), "formula": formula}]);
    let theirs = peers::run(&jobs);
    compare("levels", &ours, &theirs["levels"], false);
    let mut errs = Vec::new();
    for key in ["omnibus", "prob_omnibus", "skew", "kurtosis", "jarque_bera", "prob_jb", "durbin_watson"] {
        errs.extend(close(key, ours[key].as_f64().unwrap(), theirs["levels"][key].as_f64().unwrap(), 1e-8).err());
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    // Without --full-cov the report leaves the 423 × 423 covariance out.
    let lean = fit(&data, formula, None, &[]);
    assert!(lean["cov_params"].is_null());
    assert_eq!(lean["params"], ours["params"]);
}

#[test]
fn robust_errors_by_blocks_match_statsmodels() {
    // No singleton: statsmodels' HC2/HC3 divide by 1 − h = 0 there.
    let tmp = tempdir();
    let data = tmp.path().join("levels.csv");
    many_levels_csv(&data, 5000, 350, false);
    let formula = "y ~ x1 + x2 + C(g)";
    let d = data.to_str().unwrap();
    let jobs: Vec<Value> = ["HC1", "HC3", "cluster"]
        .iter()
        .map(|c| json!({"name": c, "kind": "fit", "data": d, "formula": formula, "cov_type": c, "cluster": "c"}))
        .collect();
    let theirs = peers::run(&json!(jobs));
    for c in ["HC1", "HC3", "cluster"] {
        let cov: &[&str] = if c == "cluster" { &["--cov-type", c, "--cluster", "c"] } else { &["--cov-type", c] };
        let ours = fit(&data, formula, None, &[cov, &["--full-cov"]].concat());
        assert!(by_blocks(&ours) && ours["cov_type"] == c, "{c}");
        compare(c, &ours, &theirs[c], false);
        // Without --full-cov: the same errors, no robust F (a note says why).
        let lean = fit(&data, formula, None, cov);
        assert_eq!(lean["bse"], ours["bse"], "{c}");
        assert!(lean["fvalue"].is_null(), "{c}: {}", lean["fvalue"]);
        let notes = lean["gramfit_notes"].as_array().unwrap();
        assert!(notes.iter().any(|n| n.as_str().unwrap().starts_with("The robust F-statistic of the")), "{c}");
    }
}

#[test]
fn where_the_fit_cannot_go_by_blocks_a_huge_factor_is_refused_before_anything_is_written() {
    let tmp = tempdir();
    let data = tmp.path().join("levels.csv");
    many_levels_csv(&data, 6000, 2100, true);
    let state = tmp.path().join("fit.gramfit");
    let why = "with --save and a robust covariance (a state by blocks keeps the nonrobust fit)";
    for extra in [
        vec!["--cov-type", "HC1", "--save", state.to_str().unwrap()],
        vec!["--cov-type", "cluster", "--cluster", "c", "--save", state.to_str().unwrap()],
    ] {
        let out = Command::new(bin())
            .args(["fit", data.to_str().unwrap(), "--formula", "y ~ x1 + C(g)", "--quiet"])
            .args(&extra)
            .env_remove("GRAMFIT_DENSE_LEVELS")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?}");
        assert!(
            err.contains(&format!("C(g) has more than 2000 levels: {why} gramfit would fit its dummies densely"))
                && err.contains("absorb the factor ('… | g')"),
            "{extra:?}: {err}"
        );
        assert!(!state.exists(), "no state is written");
    }
    // Under the dense limit the same options fit as before (densely).
    many_levels_csv(&data, 3000, 320, true);
    let hc1 = fit(&data, "y ~ x1 + x2 + C(g)", None, &["--cov-type", "HC1", "--save", state.to_str().unwrap()]);
    assert!(!by_blocks(&hc1) && hc1["cov_type"] == "HC1" && state.exists(), "{}", hc1["cov_type"]);
}

/// `gramfit …` with the block path forced on the listings' neighborhoods.
fn run_forced(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).env("GRAMFIT_DENSE_LEVELS", "20").output().unwrap()
}

fn json_of(out: std::process::Output, what: &str) -> Value {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_fit_by_blocks_saves_updates_merges_retracts_and_predicts() {
    let tmp = tempdir();
    let d = |f: &str| tmp.path().join(f).to_str().unwrap().to_string();
    let text = std::fs::read_to_string(streeteasy()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    // The second half has neighborhoods the first lacks (streaming levels).
    let (a, b) = rows.split_at(2600);
    std::fs::write(d("a.csv"), format!("{header}\n{}\n", a.join("\n"))).unwrap();
    std::fs::write(d("b.csv"), format!("{header}\n{}\n", b.join("\n"))).unwrap();
    let formula = "rent ~ size_sqft + bedrooms + C(neighborhood)";
    let fit = |inputs: &[&str], save: &str| {
        let mut args = vec!["fit".to_string()];
        args.extend(inputs.iter().map(|i| d(i)));
        args.extend(["-f", formula, "--format", "json", "--quiet", "--save"].map(String::from));
        args.push(d(save));
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        json_of(run_forced(&args), save)
    };
    let whole = fit(&["a.csv", "b.csv"], "whole.gramfit");
    assert!(by_blocks(&whole));
    let bytes = std::fs::read(d("whole.gramfit")).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), gramfit::state::FORMAT_VERSION);
    // summary shows what fit showed, bottom block included.
    let summary = json_of(run_forced(&["summary", &d("whole.gramfit"), "--format", "json"]), "summary");
    let same = json_differences(&whole, &summary, 0.0, &["elapsed_s"]);
    assert!(same.is_empty(), "summary: {}", same.join("\n"));
    // update with the second half = the fit of both (the bottom block needs
    // a second pass, which update does not run).
    let no_bottom = [
        "elapsed_s",
        "fitted_at",
        "omnibus",
        "prob_omnibus",
        "skew",
        "kurtosis",
        "jarque_bera",
        "prob_jb",
        "durbin_watson",
    ];
    let skip: Vec<&str> = no_bottom.iter().copied().chain(["gramfit_notes", "rows", "inputs"]).collect();
    fit(&["a.csv"], "a.gramfit");
    let updated = json_of(run_forced(&["update", &d("a.gramfit"), &d("b.csv"), "--format", "json"]), "update");
    let diffs = json_differences(&whole, &updated, 1e-10, &skip);
    assert!(diffs.is_empty(), "update: {}", diffs.join("\n"));
    // merge of the halves = the same; retract of the second = the first.
    let first = fit(&["a.csv"], "a2.gramfit");
    fit(&["b.csv"], "b.gramfit");
    let merged = json_of(
        run_forced(&["merge", &d("a2.gramfit"), &d("b.gramfit"), "--out", &d("m.gramfit"), "--format", "json"]),
        "merge",
    );
    let diffs = json_differences(&whole, &merged, 1e-10, &skip);
    assert!(diffs.is_empty(), "merge: {}", diffs.join("\n"));
    let retracted = json_of(run_forced(&["retract", &d("m.gramfit"), &d("b.csv"), "--format", "json"]), "retract");
    let diffs = json_differences(&first, &retracted, 1e-10, &skip);
    assert!(diffs.is_empty(), "retract: {}", diffs.join("\n"));
    // predict = the dense fit's predictions.
    let out = Command::new(bin())
        .args([
            "fit",
            &d("a.csv"),
            &d("b.csv"),
            "-f",
            formula,
            "--quiet",
            "-o",
            "/dev/null",
            "--save",
            &d("dense.gramfit"),
        ])
        .env_remove("GRAMFIT_DENSE_LEVELS")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut means = Vec::new();
    for (state, csv) in [("whole.gramfit", "p.csv"), ("dense.gramfit", "pd.csv")] {
        let out = run_forced(&["predict", &d(state), &d("b.csv"), "--interval", "none", "-o", &d(csv)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(d(csv)).unwrap();
        means.push(
            text.lines()
                .skip(1)
                .map(|l| l.split(',').next().unwrap().parse::<f64>().unwrap_or_else(|_| panic!("{csv}: {l:?}")))
                .collect::<Vec<f64>>(),
        );
    }
    assert_eq!(means[0].len(), b.len());
    for (p, q) in means[0].iter().zip(&means[1]) {
        assert!(crate::common::rel_diff(*p, *q) < 1e-11, "{p} vs {q}");
    }
    // A dense state and one by blocks do not merge; diagnose says not yet.
    let out = run_forced(&["merge", &d("whole.gramfit"), &d("dense.gramfit"), "--out", &d("x.gramfit")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not states of the same kind"), "{err}");
    let out = run_forced(&["diagnose", &d("whole.gramfit")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("diagnose is not available yet"));
}

#[test]
fn singular_designs_by_blocks_drop_and_pinv_as_the_dense_fit() {
    // seconds = 60 × minutes (two slopes aliased), the dummy trap, and
    // borough (almost) nested in neighborhood (columns constant within
    // the levels).
    let tmp = tempdir();
    let data = crate::statsmodels::with_seed_columns(tmp.path());
    for formula in [
        "rent ~ size_sqft + min_to_subway + seconds_to_subway + C(neighborhood)",
        "rent ~ size_sqft + has_washer_dryer + no_washer_dryer + C(neighborhood)",
        "rent ~ C(neighborhood) + size_sqft + C(borough)",
    ] {
        for singular in ["drop", "pinv"] {
            let extra = ["--singular", singular, "--weights", "1/(1+min_to_subway)"];
            let dense = fit(&data, formula, None, &extra);
            let blocks = fit(&data, formula, Some(2), &extra);
            assert!(by_blocks(&blocks));
            // The minimum-norm projection of seconds = 60 × minutes cancels
            // ~1e-7 of min_to_subway's variance (either path is ~1e-9
            // from statsmodels; its p-value amplifies that to ~2e-8).
            let tol = if singular == "pinv" { 1e-7 } else { 1e-9 };
            let diffs = json_differences(&dense, &blocks, tol, NOT_COMPARED);
            assert!(diffs.is_empty(), "{formula} {singular}: {}", diffs.join("\n  "));
            assert_eq!(dense["aliased"], blocks["aliased"], "{formula}");
            assert!(!blocks["aliased"].as_array().unwrap().is_empty());
        }
    }
    // A robust covariance with pinv on a singular design is refused.
    let out = Command::new(bin())
        .args(["fit", data.to_str().unwrap(), "-f", "rent ~ has_washer_dryer + no_washer_dryer + C(neighborhood)"])
        .args(["--singular", "pinv", "--cov-type", "HC1", "-q"])
        .env("GRAMFIT_DENSE_LEVELS", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--singular pinv with --cov-type HC1 is not available for a factor estimated by blocks"),
        "{err}"
    );
}

#[test]
fn a_batch_job_estimates_a_factor_by_blocks_and_keeps_its_state() {
    let tmp = tempdir();
    let d = |f: &str| tmp.path().join(f).to_str().unwrap().to_string();
    let data = streeteasy();
    let formula = "rent ~ size_sqft + bedrooms + C(neighborhood)";
    let cfg = format!(
        "inputs = [\"{}\"]\nformula = \"{formula}\"\nstate = \"{}\"\nreport = \"{}\"\nformat = \"json\"\n",
        data.display(),
        d("job.gramfit"),
        d("job.json")
    );
    std::fs::write(d("job.toml"), cfg).unwrap();
    let out = run_forced(&["run", &d("job.toml"), "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(d("job.json")).unwrap()).unwrap();
    assert!(by_blocks(&report));
    // A job's fit is one pass: the fit without its second pass (whose
    // report adds a note saying so).
    let fit = json_of(
        run_forced(&["fit", data.to_str().unwrap(), "-f", formula, "--no-second-pass", "--format", "json", "-q"]),
        "fit",
    );
    let diffs = json_differences(&fit, &report, 0.0, &["elapsed_s", "fitted_at", "gramfit_notes"]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let bytes = std::fs::read(d("job.gramfit")).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), gramfit::state::FORMAT_VERSION);
    let summary = json_of(run_forced(&["summary", &d("job.gramfit"), "--format", "json"]), "summary");
    assert!(by_blocks(&summary), "the job's state is a fit by blocks");
    // (summary adds its note that no second pass ran, as for any job's state)
    let diffs = json_differences(&report, &summary, 0.0, &["elapsed_s", "gramfit_notes"]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

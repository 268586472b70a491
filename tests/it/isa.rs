//! Every instruction-set path this CPU can run, forced by `GRAMFIT_ISA`,
//! and every thread count give the same numbers: bit for bit for the
//! first pass (the statistics, coefficients, nonrobust inference,
//! diagnostics) on every path, and for everything within each family of
//! paths — `portable` ≡ `avx2` (the general kernels), `avx512` ≡
//! `avx512vbmi` (the in-place fast path); between the two families the
//! second pass's figures (residual moments, robust covariances and what
//! follows from them) agree within the bounds the README states, because
//! the fast path sums residuals and meats in another order.

use crate::common::{bin, expected_isa, shared_datasets, tempdir};
use gramfit::isa::Level;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn the_active_level_is_what_ci_expects() {
    let Some(want) = expected_isa() else { return };
    assert_eq!(gramfit::isa::active(), want, "GRAMFIT_ISA={:?}", std::env::var("GRAMFIT_ISA").ok());
    let out = Command::new(bin()).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("kernels: {want}")), "{text}");
}

#[test]
fn an_unknown_or_unsupported_level_is_refused() {
    let out = Command::new(bin()).env("GRAMFIT_ISA", "sse9").args(["summary", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GRAMFIT_ISA=sse9 is not a level"));
    if Level::detected() < Level::Avx512Vbmi {
        let out = Command::new(bin()).env("GRAMFIT_ISA", "avx512vbmi").args(["summary", "x"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("but this CPU supports up to"));
    }
}

fn fit(data: &Path, formula: &str, extra: &[&str], level: Level, threads: usize) -> Value {
    let out = Command::new(bin())
        .env("GRAMFIT_ISA", level.name())
        .args(["fit", data.to_str().unwrap(), "-f", formula, "--format", "json", "-q"])
        .args(["--threads", &threads.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["fitted_at", "elapsed_s", "inputs"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

/// Report fields from the second pass, and how far the two families of
/// paths may differ on them (relative; README, "Same numbers on every
/// CPU"). Every other field must be identical.
type Bounds = [(&'static str, f64); 14];

const SECOND_PASS: Bounds = [
    ("omnibus", 1e-14),
    ("prob_omnibus", 1e-11),
    ("skew", 1e-14),
    ("kurtosis", 1e-14),
    ("jarque_bera", 1e-14),
    ("prob_jb", 1e-11),
    ("durbin_watson", 1e-14),
    ("bse", 1e-12),
    ("tvalues", 1e-12),
    ("pvalues", 1e-10),
    ("conf_int", 1e-11),
    ("cov_params", 1e-12),
    ("fvalue", 1e-9),
    ("f_pvalue", 1e-7),
];

/// `(field, relative difference)` for each number that differs.
fn differences(a: &Value, b: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (k, va) in a.as_object().unwrap() {
        let vb = &b[k];
        if va == vb {
            continue;
        }
        let mut worst = 0.0f64;
        let mut walk = vec![(va, vb)];
        while let Some((x, y)) = walk.pop() {
            match (x, y) {
                (Value::Array(p), Value::Array(q)) if p.len() == q.len() => walk.extend(p.iter().zip(q)),
                (Value::Object(p), Value::Object(q)) => walk.extend(p.iter().map(|(k, v)| (v, &q[k]))),
                (Value::Number(p), Value::Number(q)) => {
                    let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
                    let scale = if k == "cov_params" { cov_scale(a) } else { p.abs().max(q.abs()) };
                    worst = worst.max((p - q).abs() / scale.max(1e-300));
                }
                _ if x == y => {}
                _ => worst = f64::INFINITY,
            }
        }
        out.push((k.clone(), worst));
    }
    out
}

/// The largest variance of a covariance matrix (off-diagonal entries near
/// zero are compared against it).
fn cov_scale(report: &Value) -> f64 {
    let cp = report["cov_params"].as_object().unwrap();
    cp.iter().filter_map(|(n, row)| row[n].as_f64()).fold(0.0, f64::max)
}

fn family(l: Level) -> u8 {
    u8::from(l >= Level::Avx512)
}

/// Longley's collinear columns (VIFs to 1,800): the robust covariance
/// B·M·B in `f64` loses ~8 digits on both paths (measured against a
/// 50-digit reference: HC1 errors ≤ 1.6e-8 relative on either path; the
/// Wald F on the robust covariance 1.7e-4 and 5.7e-5), so the paths agree
/// to what each carries.
const ILL_CONDITIONED: Bounds = [
    ("omnibus", 1e-10),
    ("prob_omnibus", 1e-8),
    ("skew", 1e-10),
    ("kurtosis", 1e-11),
    ("jarque_bera", 1e-10),
    ("prob_jb", 1e-8),
    ("durbin_watson", 1e-12),
    ("bse", 1e-7),
    ("tvalues", 1e-7),
    ("pvalues", 1e-6),
    ("conf_int", 1e-7),
    ("cov_params", 1e-7),
    ("fvalue", 1e-3),
    ("f_pvalue", 1e-2),
];

fn check_paths(data: &Path, formula: &str, extra: &[&str], bounds: &Bounds, failures: &mut Vec<String>) {
    let levels: Vec<Level> = Level::ALL.into_iter().filter(|&l| l <= Level::detected()).collect();
    let reference = fit(data, formula, extra, Level::Portable, 1);
    let mut family_ref: [Option<Value>; 2] = [None, None];
    for &l in &levels {
        for threads in [1, 2, 3] {
            let ours = fit(data, formula, extra, l, threads);
            let fam = &mut family_ref[usize::from(family(l))];
            let fam_ref = fam.get_or_insert_with(|| ours.clone()).clone();
            for (k, d) in differences(&fam_ref, &ours) {
                failures.push(format!(
                    "{formula} {extra:?}: {l} on {threads} threads: {k} differs within its family ({d:e})"
                ));
            }
            for (k, d) in differences(&reference, &ours) {
                match bounds.iter().find(|(f, _)| *f == k) {
                    Some((_, tol)) if d <= *tol => {}
                    Some((_, tol)) => {
                        failures.push(format!("{formula} {extra:?}: {l}: {k} differs by {d:e} > {tol:e}"))
                    }
                    None => failures.push(format!("{formula} {extra:?}: {l}: first-pass figure {k} differs ({d:e})")),
                }
            }
        }
    }
}

#[test]
fn every_path_and_thread_count_gives_the_same_numbers() {
    let mut failures = Vec::new();
    let listings = shared_datasets().join("streeteasy/streeteasy.csv");
    for formula in [
        "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + C(borough)",
        "rent ~ bedrooms + bathrooms + size_sqft + min_to_subway + floor + building_age_yrs + no_fee + has_roofdeck \
         + has_washer_dryer + has_doorman + has_elevator + has_dishwasher + has_patio + has_gym",
        "rent ~ size_sqft + bedrooms + has_washer_dryer + C(neighborhood)",
        "np.log(rent) ~ size_sqft + I(size_sqft**2) + C(borough)",
    ] {
        for extra in [&[][..], &["--cov-type", "HC3"], &["--cov-type", "cluster", "--cluster", "neighborhood"]] {
            check_paths(&listings, formula, extra, &SECOND_PASS, &mut failures);
        }
    }
    // NIST: the hardest conditioning, where an order of summation would
    // show first.
    let tmp = tempdir();
    let dir = shared_datasets().join("nist");
    let cert: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("certified.json")).unwrap()).unwrap();
    for (name, formula) in [
        ("Longley", "y ~ x1 + x2 + x3 + x4 + x5 + x6"),
        ("Filip", "y ~ x + I(x**2) + I(x**3) + I(x**4) + I(x**5) + I(x**6) + I(x**7) + I(x**8) + I(x**9) + I(x**10)"),
        ("Wampler4", "y ~ x + I(x**2) + I(x**3) + I(x**4) + I(x**5)"),
    ] {
        let ds = &cert["datasets"][name];
        let cols: Vec<&str> = ds["data"]["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let mut csv = cols.join(",") + "\n";
        for row in ds["data"]["rows_text"].as_array().unwrap() {
            let r: Vec<&str> = row.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
            csv.push_str(&r.join(","));
            csv.push('\n');
        }
        let path = tmp.path().join(format!("{name}.csv"));
        std::fs::write(&path, csv).unwrap();
        let bounds = if name == "Longley" { &ILL_CONDITIONED } else { &SECOND_PASS };
        check_paths(&path, formula, &["--cov-type", "HC1"], bounds, &mut failures);
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

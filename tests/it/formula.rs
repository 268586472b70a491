//! The formula language against patsy itself: same column names, order,
//! values and dropped rows on 44 formulas; streaming levels; formula errors.

use crate::common::{gramfit, gramfit_json, rel_diff, shared_datasets, streeteasy, tempdir};
use crate::peers;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const STREETEASY: [&str; 32] = [
    "rent ~ size_sqft",
    "rent ~ size_sqft + bedrooms - 1",
    "rent ~ 0 + size_sqft",
    "rent ~ C(borough)",
    "rent ~ C(borough) - 1",
    "rent ~ borough",
    "rent ~ C(borough, Treatment('Queens'))",
    "rent ~ C(borough, Treatment(reference='Manhattan')) + size_sqft",
    "rent ~ size_sqft * C(borough)",
    "rent ~ size_sqft : C(borough)",
    "rent ~ C(borough) : size_sqft - 1",
    "rent ~ C(borough):C(submarket)",
    "rent ~ C(borough) * has_doorman",
    "rent ~ (size_sqft + bedrooms + bathrooms) ** 2",
    "rent ~ I(size_sqft / 100) + I(size_sqft ** 2)",
    "np.log(rent) ~ np.log(size_sqft) + np.sqrt(min_to_subway)",
    "rent ~ np.exp(bedrooms / 10) + np.abs(floor - 10)",
    "rent ~ C(bedrooms)",
    "rent ~ C(bedrooms) + C(bathrooms)",
    "rent ~ size_sqft + I(-min_to_subway) + I(1 - has_doorman)",
    "rent ~ bedrooms:bathrooms",
    "rent ~ C(borough) / size_sqft",
    "rent ~ size_sqft + C(neighborhood)",
    "rent ~ Q('size_sqft') + Q('min_to_subway')",
    "rent ~ C(submarket) + C(borough)",
    "rent ~ C(borough):has_doorman:size_sqft",
    "rent ~ (C(borough) + has_elevator) ** 2",
    "rent ~ size_sqft - size_sqft + bedrooms",
    "rent ~ 1 + size_sqft",
    "np.log1p(rent) ~ np.log10(size_sqft) + np.log2(bedrooms + 1)",
    "rent ~ I(size_sqft ** 0.5) + I(min_to_subway ** 1.5) + I((bathrooms + 1) ** -0.25)",
    "np.log(rent / size_sqft) ~ np.exp(-min_to_subway / 7) + np.log(building_age_yrs + 0.5)",
];

const GENERATED: [&str; 14] = [
    "y ~ x1 + x2",
    "y ~ g",
    "y ~ C(g) + b",
    "y ~ b - 1",
    "y ~ g:b",
    "y ~ g * x1",
    "y ~ C(n) + x2",
    "y ~ C(n, Treatment(2))",
    "y ~ h + g + h:g",
    "y ~ np.log(x2) + g",
    "y ~ x1:x2 + I(x1 * x2)",
    "y ~ C(g, Treatment('c')) : x1",
    "y ~ b:x1 - 1",
    "y ~ (g + h + b) ** 3",
];

/// Numeric, categorical, boolean and missing values.
fn generated_csv(dir: &Path) -> PathBuf {
    let mut rng = gramfit::generate::Rng::new(99);
    let mut s = String::from("y,x1,x2,g,h,b,n\n");
    for _ in 0..400 {
        let miss = |r: &mut gramfit::generate::Rng, v: String| if r.uniform() < 0.03 { String::new() } else { v };
        let v = format!("{:.4}", 10.0 + rng.normal());
        let y = miss(&mut rng, v);
        let v = format!("{:.6}", rng.normal() * 3.0);
        let x1 = miss(&mut rng, v);
        let x2 = format!("{}", 1 + rng.below(50));
        let v = ["a", "b", "c", "d"][rng.below(4) as usize].to_string();
        let g = miss(&mut rng, v);
        let h = ["lo", "hi"][rng.below(2) as usize];
        let b = ["True", "False"][rng.below(2) as usize];
        let n = 1 + rng.below(3);
        s.push_str(&format!("{y},{x1},{x2},{g},{h},{b},{n}\n"));
    }
    let p = dir.join("generated.csv");
    std::fs::write(&p, s).unwrap();
    p
}

fn design_csv(data: &Path, formula: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let out = gramfit(["design", data.to_str().unwrap(), "-f", formula, "--head", "0", "--format", "csv"]);
    assert!(out.status.success(), "{formula}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header = parse_csv_line(lines.next().unwrap());
    let rows = lines.map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect()).collect();
    (header, rows)
}

fn parse_csv_line(l: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = l.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[test]
fn design_matrices_match_patsy() {
    let tmp = tempdir();
    let gen = generated_csv(tmp.path());
    let se = streeteasy();
    let mut cases: Vec<(String, PathBuf, &str)> = Vec::new();
    for (i, f) in STREETEASY.iter().enumerate() {
        cases.push((format!("s{i}"), se.clone(), f));
    }
    for (i, f) in GENERATED.iter().enumerate() {
        cases.push((format!("g{i}"), gen.clone(), f));
    }
    assert!(cases.len() >= 40);
    let jobs: Vec<Value> = cases
        .iter()
        .map(|(n, d, f)| json!({"name": n, "kind": "design", "data": d.to_str().unwrap(), "formula": f}))
        .collect();
    let theirs = peers::run(&json!(jobs));
    let mut failures = Vec::new();
    for (n, d, f) in &cases {
        let t = &theirs[n];
        if let Some(e) = t.get("error") {
            failures.push(format!("{f}: patsy failed: {e}"));
            continue;
        }
        let (header, rows) = design_csv(d, f);
        let mut names: Vec<String> =
            t["y_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
        names.extend(t["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()));
        if header != names {
            failures.push(format!("{f}: columns\n    gramfit {header:?}\n    patsy   {names:?}"));
            continue;
        }
        if rows.len() as u64 != t["rows"].as_u64().unwrap() {
            failures.push(format!("{f}: {} rows vs patsy {}", rows.len(), t["rows"]));
            continue;
        }
        let x = t["X"].as_array().unwrap();
        let y = t["y"].as_array().unwrap();
        'rows: for (r, row) in rows.iter().enumerate() {
            let mut want = vec![y[r].as_f64().unwrap()];
            want.extend(x[r].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
            for (a, b) in row.iter().zip(&want) {
                if rel_diff(*a, *b) > 1e-12 {
                    failures.push(format!("{f}: row {r}: {row:?} vs {want:?}"));
                    break 'rows;
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} formulas differ from patsy:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A term that is a quotient is the double numpy divides out, to the
/// bit: by constants, by columns, as a reciprocal, of a negated column.
#[test]
fn quotient_terms_are_numpys_doubles() {
    let se = streeteasy();
    let f = "rent ~ I(size_sqft / 7) + I(size_sqft / 1000) + I(rent / size_sqft) + I(1 / (min_to_subway + 1)) + I(-bathrooms / 3)";
    let theirs = peers::run(&json!([{"name": "q", "kind": "design", "data": se.to_str().unwrap(), "formula": f}]));
    let x = theirs["q"]["X"].as_array().unwrap();
    let (header, rows) = design_csv(&se, f);
    assert_eq!(header.len(), 7, "{header:?}");
    assert_eq!(rows.len(), x.len());
    assert!(rows.len() > 3000);
    for (r, row) in rows.iter().enumerate() {
        let want: Vec<f64> = x[r].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(&row[1..], &want[..], "row {r}");
    }
}

#[test]
fn design_reports_dropped_rows_like_patsy() {
    let tmp = tempdir();
    let gen = generated_csv(tmp.path());
    let theirs =
        peers::run(&json!([{"name": "d", "kind": "design", "data": gen.to_str().unwrap(), "formula": "y ~ x1 + g"}]));
    let fit = gramfit_json(["fit", gen.to_str().unwrap(), "-f", "y ~ x1 + g", "--format", "json"]);
    assert_eq!(fit["rows"]["dropped"], theirs["d"]["dropped"]);
    assert_eq!(fit["nobs"], theirs["d"]["rows"]);
}

#[test]
fn a_level_first_seen_in_the_last_file_fits_like_one_file() {
    let d = shared_datasets().join("streeteasy");
    let parts = [d.join("manhattan.csv"), d.join("brooklyn.csv"), d.join("queens.csv")];
    let tmp = tempdir();
    // The same rows in one file, in the same order.
    let mut whole = String::new();
    for (i, p) in parts.iter().enumerate() {
        let t = std::fs::read_to_string(p).unwrap();
        let mut lines = t.lines();
        let header = lines.next().unwrap();
        if i == 0 {
            whole.push_str(header);
            whole.push('\n');
        }
        for l in lines {
            whole.push_str(l);
            whole.push('\n');
        }
    }
    let one = tmp.path().join("all.csv");
    std::fs::write(&one, whole).unwrap();
    let f = "rent ~ size_sqft + C(borough) + C(neighborhood)";
    let args = |files: Vec<&str>| {
        let mut a = vec!["fit"];
        a.extend(files);
        a.extend(["-f", f, "--format", "json"]);
        gramfit_json(a)
    };
    let split = args(parts.iter().map(|p| p.to_str().unwrap()).collect());
    let single = args(vec![one.to_str().unwrap()]);
    let names: Vec<&String> = single["params"].as_object().unwrap().keys().collect();
    assert!(names.iter().any(|n| n.as_str() == "C(borough)[T.Queens]"));
    assert_eq!(names, split["params"].as_object().unwrap().keys().collect::<Vec<_>>());
    for n in names {
        for key in ["params", "bse"] {
            match (single[key][n].as_f64(), split[key][n].as_f64()) {
                (Some(a), Some(b)) => assert!(rel_diff(a, b) <= 1e-10, "{key}[{n}]: {a} vs {b}"),
                (a, b) => assert_eq!(a, b, "{key}[{n}]"),
            }
        }
    }
}

fn usage_error(formula: &str, needles: &[&str]) {
    let out = gramfit(["fit", streeteasy().to_str().unwrap(), "-f", formula]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{formula}: {err}");
    for n in needles {
        assert!(err.contains(n), "{formula}: expected '{n}' in:\n{err}");
    }
}

#[test]
fn formula_errors_name_the_position_and_the_problem() {
    usage_error("rent ~ size_sqft +", &["unexpected end of formula", "(at column 19)", "^"]);
    usage_error("rent ~ (size_sqft + bedrooms", &["expected ')'", "^"]);
    usage_error("rent ~ size_sqtf", &["no column named 'size_sqtf'", "did you mean 'size_sqft'?", "^^^^^^^^^"]);
    usage_error("rent ~ np.log(sqft_size)", &["no column named 'sqft_size'"]);
    usage_error("rent ~ C(borough, Sum)", &["unsupported: the contrast 'Sum'"]);
    usage_error("rent ~ center(size_sqft)", &["unsupported: the stateful transform 'center()'"]);
    usage_error("rent ~ np.sin(size_sqft)", &["unsupported: the function 'sin()'"]);
    usage_error("rent ~ size_sqft ** 2.5", &["'**' requires a positive integer"]);
    usage_error("size_sqft", &["needs a response"]);
    usage_error("borough ~ size_sqft", &["the response must be numeric"]);
    usage_error("rent ~ I(borough + 1)", &["'borough' is not numeric"]);
    // A reference level that the data do not have is a data error (exit 1).
    let out = gramfit(["fit", streeteasy().to_str().unwrap(), "-f", "rent ~ C(borough, Treatment('Bronx'))"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the reference level 'Bronx'") && err.contains("(Brooklyn, Manhattan, Queens)"), "{err}");
}

//! NIST StRD linear regression: every certified value through the public
//! path (`gramfit fit --format json`), as log relative errors.

use crate::common::{gramfit_json, lre, shared_datasets, tempdir};
use serde_json::Value;

fn formula(name: &str, terms: &[Value]) -> String {
    let mut rhs: Vec<String> = Vec::new();
    let mut intercept = false;
    for t in terms {
        let t = t["term"].as_str().unwrap();
        match t {
            "1" => intercept = true,
            "x" => rhs.push("x".into()),
            t if t.starts_with("x^") => rhs.push(format!("I(x**{})", &t[2..])),
            t => rhs.push(t.to_string()),
        }
    }
    let mut f = format!("y ~ {}", rhs.join(" + "));
    if !intercept {
        f.push_str(" - 1");
    }
    let _ = name;
    f
}

/// (dataset, min LRE over coefficients and SEs, residual SD LRE, R² LRE)
fn run_all() -> Vec<(String, f64, f64, f64)> {
    let dir = shared_datasets().join("nist");
    let cert: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("certified.json")).unwrap()).unwrap();
    let tmp = tempdir();
    let mut out = Vec::new();
    for (name, ds) in cert["datasets"].as_object().unwrap() {
        let cols: Vec<&str> = ds["data"]["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let mut csv = cols.join(",") + "\n";
        for row in ds["data"]["rows_text"].as_array().unwrap() {
            let r: Vec<&str> = row.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
            csv.push_str(&r.join(","));
            csv.push('\n');
        }
        let path = tmp.path().join(format!("{name}.csv"));
        std::fs::write(&path, csv).unwrap();
        let terms = ds["terms"].as_array().unwrap();
        let f = formula(name, terms);
        let j = gramfit_json(["fit", path.to_str().unwrap(), "--formula", &f, "--format", "json", "--quiet"]);
        let names: Vec<String> = j["params"].as_object().unwrap().keys().cloned().collect();
        let mut worst = f64::INFINITY;
        for (i, p) in ds["certified"]["parameters"].as_array().unwrap().iter().enumerate() {
            let est = j["params"][&names[i]].as_f64().unwrap_or(f64::NAN);
            let se = j["bse"][&names[i]].as_f64().unwrap_or(f64::NAN);
            let l1 = lre(est, p["estimate"].as_f64().unwrap());
            let l2 = lre(se, p["std_dev"].as_f64().unwrap());
            worst = worst.min(l1).min(l2);
        }
        let rsd = j["scale"].as_f64().unwrap_or(f64::NAN).sqrt();
        let l_rsd = lre(rsd, ds["certified"]["residual_sd"].as_f64().unwrap());
        let l_r2 = lre(j["rsquared"].as_f64().unwrap_or(f64::NAN), ds["certified"]["r_squared"].as_f64().unwrap());
        out.push((name.clone(), worst, l_rsd, l_r2));
    }
    out
}

#[test]
fn nist_strd_linear_certified_values() {
    let results = run_all();
    assert_eq!(results.len(), 11, "all eleven NIST linear sets");
    println!("{:<10} {:>12} {:>8} {:>8}", "dataset", "min LRE β/SE", "LRE RSD", "LRE R²");
    for (name, worst, rsd, r2) in &results {
        println!("{name:<10} {worst:>12.1} {rsd:>8.1} {r2:>8.1}");
    }
    for (name, worst, rsd, r2) in &results {
        // The issue asks for ≥ 10 (Filip ≥ 7); we hold ourselves to the stated aim of 12.
        let floor = 12.0;
        assert!(*worst >= floor, "{name}: coefficient/SE LRE {worst:.1} < {floor}");
        assert!(*rsd >= floor, "{name}: residual SD LRE {rsd:.1} < {floor}");
        assert!(*r2 >= floor, "{name}: R² LRE {r2:.1} < {floor}");
    }
}

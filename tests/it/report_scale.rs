//! Wide designs: past 300 columns with factors, the collinearity figures
//! are those of the numeric block (equal to the design without the
//! factor's), the JSON report leaves out cov_params and says so;
//! `--full-cov` writes it, consistent with the standard errors; the
//! parallel dense solve gives the same bits for any number of threads.

use crate::common::{bin, gramfit_json, rel_diff, tempdir};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

fn write_wide(csv: &Path) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(csv).unwrap());
    writeln!(w, "y,x,g").unwrap();
    for i in 0..12_000u64 {
        let g = (i * 7) % 330;
        let x = ((i * 2_654_435_761) % 1000) as f64 / 1000.0;
        writeln!(w, "{:.4},{x},L{g}", 1.0 + 2.0 * x + g as f64 * 0.01 + ((i * 40_503) % 997) as f64 / 997.0).unwrap();
    }
}

#[test]
fn the_parallel_solve_gives_the_same_bits_for_any_number_of_threads() {
    let dir = tempdir();
    let csv = dir.path().join("wide.csv");
    write_wide(&csv);
    let fit = |threads: &str| -> Value {
        let out = std::process::Command::new(bin())
            .args(["fit", csv.to_str().unwrap(), "-f", "y ~ x + C(g)", "--format", "json", "--full-cov"])
            .args(["--cov-type", "HC1"])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
        for k in ["elapsed_s", "fitted_at"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let one = fit("1");
    assert_eq!(one["cov_params"].as_object().unwrap().len(), 331);
    for threads in ["2", "3", "8"] {
        assert_eq!(fit(threads), one, "RAYON_NUM_THREADS={threads}");
    }
}

#[test]
fn wide_json_leaves_out_the_square_blocks_unless_asked() {
    let dir = tempdir();
    let csv = dir.path().join("wide.csv");
    write_wide(&csv);
    let f = "y ~ x + C(g)";
    let short = gramfit_json(["fit", csv.to_str().unwrap(), "-f", f, "--format", "json", "--no-second-pass"]);
    let full =
        gramfit_json(["fit", csv.to_str().unwrap(), "-f", f, "--format", "json", "--no-second-pass", "--full-cov"]);
    let names: Vec<&String> = full["params"].as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 331);
    // Left out, and said so.
    assert!(short["cov_params"].is_null());
    let note =
        short["gramfit_notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect::<Vec<_>>().join(" ");
    assert!(note.contains("331 columns") && note.contains("--full-cov"), "{note}");
    assert!(note.contains("its 2 numeric columns"), "{note}");
    // Everything else is the same report.
    for k in ["params", "bse", "eigenvals", "condition_number", "rsquared", "diagnostics"] {
        assert_eq!(short[k], full[k], "{k}");
    }
    // The collinearity figures are those of the numeric block: the design
    // of `y ~ x` (XᵀX restricted to the intercept and x is that design's).
    let narrow = gramfit_json(["fit", csv.to_str().unwrap(), "-f", "y ~ x", "--format", "json", "--no-second-pass"]);
    let close = |a: &Value, b: &Value, what: &str| {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        assert_eq!(a.len(), b.len(), "{what}");
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(rel_diff(x, y) <= 1e-9, "{what}: {x:e} vs {y:e}");
        }
    };
    close(&short["eigenvals"], &narrow["eigenvals"], "eigenvals");
    close(&short["diagnostics"]["condition_indices"], &narrow["diagnostics"]["condition_indices"], "indices");
    let cn = |v: &Value| v["condition_number"].as_f64().unwrap();
    assert!(rel_diff(cn(&short), cn(&narrow)) <= 1e-9);
    let (sc, nc) = (&short["diagnostics"]["correlation"], &narrow["diagnostics"]["correlation"]);
    assert_eq!(sc["names"], nc["names"]);
    for (a, b) in sc["matrix"].as_array().unwrap().iter().zip(nc["matrix"].as_array().unwrap()) {
        close(a, b, "correlation");
    }
    // Written on request, and consistent: √cov_ii = bse_i.
    let cov = full["cov_params"].as_object().unwrap();
    assert_eq!(cov.len(), 331);
    for n in names {
        let v = cov[n.as_str()][n.as_str()].as_f64().unwrap();
        let b = full["bse"][n.as_str()].as_f64().unwrap();
        assert!(rel_diff(v.sqrt(), b) <= 1e-12, "{n}: √{v} vs {b}");
    }
    assert_eq!(full["diagnostics"]["correlation"]["matrix"].as_array().unwrap().len(), 2);
    assert_eq!(full["diagnostics"]["variance_proportions"].as_array().unwrap().len(), 2);
}

/// Batch configs: `full_cov = true` as `--full-cov`, per model.
#[test]
fn a_config_asks_for_the_square_blocks_per_model() {
    let dir = tempdir();
    let csv = dir.path().join("wide.csv");
    write_wide(&csv);
    let config = dir.path().join("job.toml");
    std::fs::write(
        &config,
        format!(
            "inputs = [{csv:?}]\nformula = \"y ~ x + C(g)\"\nformat = \"json\"\n\
             [[models]]\nname = \"short\"\nreport = \"short.json\"\n\
             [[models]]\nname = \"full\"\nreport = \"full.json\"\nfull_cov = true\n",
            csv = csv.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = crate::common::gramfit(["run", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read =
        |n: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(dir.path().join(n)).unwrap()).unwrap() };
    assert!(read("short.json")["cov_params"].is_null());
    assert_eq!(read("full.json")["cov_params"].as_object().unwrap().len(), 331);
}

//! The engine: formats agree, results are bit-identical across thread counts
//! and batch sizes, and bad inputs get clear errors.

use crate::common::{gramfit, gramfit_json, rel_diff, tempdir};
use gramfit::generate;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const F: &str = "rent ~ size_sqft + bedrooms + bathrooms + min_to_subway + floor + has_doorman + C(borough) + np.log(size_sqft):C(submarket)";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn numbers(v: &Value) -> Value {
    // Everything but timing.
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("elapsed_s");
    o.remove("fitted_at");
    o.remove("inputs");
    v
}

#[test]
fn formats_agree() {
    let tmp = tempdir();
    let pq = tmp.path().join("l.parquet");
    let csv = tmp.path().join("l.csv");
    let ipc = tmp.path().join("l.arrow");
    let stream = tmp.path().join("l.arrows");
    generate::write_parquet(&pq, 3, 0, 30_000, 7_000).unwrap();
    generate::write_csv(&csv, 3, 0, 30_000).unwrap();
    generate::write_ipc(&ipc, 3, 0, 30_000, false).unwrap();
    generate::write_ipc(&stream, 3, 0, 30_000, true).unwrap();
    let reference = gramfit_json(["fit", s(&pq), "-f", F, "--format", "json"]);
    assert_eq!(reference["rows"]["read"], 30_000);
    assert!(reference["rows"]["dropped"].as_u64().unwrap() > 0, "the generator's nulls are dropped");
    let mut others = vec![
        ("csv", gramfit_json(["fit", s(&csv), "-f", F, "--format", "json"])),
        ("ipc", gramfit_json(["fit", s(&ipc), "-f", F, "--format", "json"])),
        ("ipc stream file", gramfit_json(["fit", s(&stream), "-f", F, "--format", "json"])),
    ];
    // An IPC stream on stdin.
    let mut child = Command::new(crate::common::bin())
        .args(["fit", "-", "-f", F, "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(&stream).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    others.push(("stdin", serde_json::from_slice(&out.stdout).unwrap()));
    for (what, v) in &others {
        assert_eq!(v["nobs"], reference["nobs"], "{what}");
        for (k, b) in reference["params"].as_object().unwrap() {
            let (a, b) = (v["params"][k].as_f64().unwrap(), b.as_f64().unwrap());
            assert!(rel_diff(a, b) <= 1e-12, "{what}: params[{k}] {a:e} vs {b:e}");
            let (a, b) = (v["bse"][k].as_f64().unwrap(), reference["bse"][k].as_f64().unwrap());
            assert!(rel_diff(a, b) <= 1e-12, "{what}: bse[{k}] {a:e} vs {b:e}");
        }
    }
}

#[test]
fn bit_identical_across_threads_and_batch_sizes() {
    let tmp = tempdir();
    let pq = tmp.path().join("l.parquet");
    let csv = tmp.path().join("l.csv");
    generate::write_parquet(&pq, 5, 0, 60_000, 9_000).unwrap();
    generate::write_csv(&csv, 5, 0, 60_000).unwrap();
    for input in [&pq, &csv] {
        let mut first: Option<Value> = None;
        for threads in ["1", "2", "3"] {
            for batch in ["1000", "8192", "65536"] {
                let v = numbers(&gramfit_json([
                    "fit",
                    s(input),
                    "-f",
                    F,
                    "--format",
                    "json",
                    "--threads",
                    threads,
                    "--batch-size",
                    batch,
                ]));
                match &first {
                    None => first = Some(v),
                    // serde_json prints shortest round-trip digits: equal
                    // JSON means equal bits.
                    Some(f) => assert_eq!(&v, f, "{}: threads {threads}, batch {batch}", input.display()),
                }
            }
        }
    }
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = gramfit(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected '{n}' in: {err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let tmp = tempdir();
    let d = tmp.path();
    let f = "rent ~ size_sqft";
    fails_with(&["fit", s(&d.join("nope.csv")), "-f", f], &["nope.csv", "no such file"]);
    let empty = d.join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    fails_with(&["fit", s(&empty), "-f", f], &["empty.csv", "empty"]);
    let empty_pq = d.join("empty.parquet");
    std::fs::write(&empty_pq, "").unwrap();
    fails_with(&["fit", s(&empty_pq), "-f", f], &["empty.parquet", "empty"]);
    let pq = d.join("good.parquet");
    generate::write_parquet(&pq, 1, 0, 20_000, 5_000).unwrap();
    let bytes = std::fs::read(&pq).unwrap();
    let trunc = d.join("truncated.parquet");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&["fit", s(&trunc), "-f", f], &["truncated.parquet", "Parquet"]);
    // Corrupt the middle of the data (snappy pages): decoding must fail,
    // naming the row group, rather than produce numbers.
    let corrupt = d.join("corrupt.parquet");
    let mut b = bytes.clone();
    let mid = b.len() / 3;
    for x in &mut b[mid..mid + 64] {
        *x = !*x;
    }
    std::fs::write(&corrupt, &b).unwrap();
    fails_with(
        &[
            "fit",
            s(&corrupt),
            "-f",
            "rent ~ size_sqft + bedrooms + bathrooms + min_to_subway + floor + building_age_yrs",
        ],
        &["corrupt.parquet", "row group"],
    );
    // A string in a numeric column, after the rows used to infer types.
    let csv = d.join("bad_value.csv");
    let mut text = String::from("rent,size_sqft\n");
    for i in 0..20 {
        text.push_str(&format!("{},{}\n", 1000 + i, 500 + i));
    }
    text.push_str("1500,abc\n");
    std::fs::write(&csv, &text).unwrap();
    let out = gramfit(["fit", s(&csv), "-f", f]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad_value.csv"), "{err}");
    // Schema conflict across files.
    let a = d.join("a.csv");
    let b2 = d.join("b.csv");
    std::fs::write(&a, "rent,size_sqft,borough\n1000,500,Queens\n1100,600,Bronx\n1200,650,Queens\n").unwrap();
    std::fs::write(&b2, "rent,size_sqft,borough\n1000,x500,Queens\n1100,y600,Bronx\n1200,z,Queens\n").unwrap();
    fails_with(&["fit", s(&a), s(&b2), "-f", f], &["b.csv", "size_sqft", "numeric"]);
    // A missing column in the second file.
    let c = d.join("c.csv");
    std::fs::write(&c, "rent,area\n1000,500\n").unwrap();
    fails_with(&["fit", s(&a), s(&c), "-f", f], &["c.csv", "size_sqft", "missing"]);
    // Empty directory and a glob that matches nothing.
    let dir = d.join("nothing");
    std::fs::create_dir(&dir).unwrap();
    fails_with(&["fit", s(&dir), "-f", f], &["nothing", "no .parquet"]);
    fails_with(&["fit", &format!("{}/*.parquet", dir.display()), "-f", f], &["no input files match"]);
    // Infinite values and a log of zero are refused with the row named.
    let inf = d.join("inf.csv");
    std::fs::write(&inf, "rent,size_sqft\n1000,500\n1100,inf\n1200,0\n").unwrap();
    fails_with(&["fit", s(&inf), "-f", f], &["inf.csv", "line 3", "size_sqft"]);
    let zero = d.join("zero.csv");
    std::fs::write(&zero, "rent,size_sqft\n1000,500\n1100,600\n1200,0\n").unwrap();
    fails_with(
        &["fit", s(&zero), "-f", "rent ~ np.log(size_sqft)"],
        &["zero.csv", "line 4", "np.log(size_sqft)", "-inf"],
    );
    // --missing error names the column and line.
    let miss = d.join("missing.csv");
    std::fs::write(&miss, "rent,size_sqft\n1000,500\n1100,\n1200,700\n").unwrap();
    fails_with(&["fit", s(&miss), "-f", f, "--missing", "error"], &["missing.csv", "size_sqft", "line 3"]);
}

//! Files from the world's writers — pyarrow, DuckDB, polars and pandas,
//! written at test time by `tests/corpus/make_corpus.py` from the StreetEasy
//! listings — with every codec, page version, encoding, checksum and CSV
//! dialect: each fits as the reference file does (bit for bit when its rows
//! are merged in the same order), with and without the fast path; damaged
//! ones are refused with the file (and row group and column) named.

use crate::common::{bin, json_differences, streeteasy};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The corpus directory and its manifest, made once per test run.
fn corpus() -> &'static (PathBuf, Value) {
    static CORPUS: OnceLock<(PathBuf, Value)> = OnceLock::new();
    CORPUS.get_or_init(|| {
        // Under the target directory (one corpus, remade each run).
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus");
        let _ = std::fs::remove_dir_all(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/make_corpus.py");
        let python = std::env::var("GRAMFIT_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(&python).arg(&script).arg(streeteasy()).arg(&dir).output();
        let out = out.unwrap_or_else(|e| panic!("\n\n*** PEER MISSING *** cannot run {python}: {e}\n"));
        assert!(
            out.status.success(),
            "\n\n*** CORPUS WRITERS FAILED *** {python} {}: {}\nInstall pyarrow, duckdb, polars and pandas \
             (`pip install -r tests/peers/requirements.txt`; `.ci/run` does).\n",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
        (dir, manifest)
    })
}

fn run(file: &Path, formula: &str, extra: &[String], reference_path: bool) -> Output {
    let mut c = Command::new(bin());
    c.args(["fit", file.to_str().unwrap(), "-f", formula, "--format", "json", "--quiet"]).args(extra);
    if reference_path {
        c.env("GRAMFIT_NO_DIRECT", "1");
    } else {
        c.env_remove("GRAMFIT_NO_DIRECT");
    }
    c.output().expect("run gramfit")
}

fn fit(file: &Path, formula: &str, extra: &[String], reference_path: bool) -> Value {
    let out = run(file, formula, extra, reference_path);
    assert!(
        out.status.success(),
        "{} (reference path: {reference_path}): {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Report fields that differ by file or run, not by the fit.
const VOLATILE: [&str; 3] = ["fitted_at", "elapsed_s", "inputs"];

#[test]
fn every_writer_codec_and_setting_fits_as_the_reference_does() {
    let (dir, m) = corpus();
    let model = m["model"].as_str().unwrap();
    // The fast path and the general one agree to rounding in the second
    // pass (README, "Fast path"): each file is compared with the reference
    // file read the same way.
    let reference_file = dir.join(m["reference"].as_str().unwrap());
    let references = [fit(&reference_file, model, &[], false), fit(&reference_file, model, &[], true)];
    assert_eq!(references[0]["nobs"], 3871, "the reference fit drops the rows with a null");
    let d = json_differences(&references[0], &references[1], 1e-11, &VOLATILE);
    assert!(d.is_empty(), "fast and general paths: {d:?}");
    let mut failures = Vec::new();
    let mut checked = 0;
    for f in m["files"].as_array().unwrap().iter().filter(|f| f["expect"] == "fit") {
        let path = dir.join(f["file"].as_str().unwrap());
        let args: Vec<String> = f["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect();
        // Rows merged in the reference's order: the same bits; otherwise
        // the same sums in another order.
        let tol = if f["chunking"] == "whole" { 0.0 } else { 1e-11 };
        for reference_path in [false, true] {
            let out = run(&path, model, &args, reference_path);
            if !out.status.success() {
                failures.push(format!("{} ({}): {}", f["file"], f["writer"], String::from_utf8_lossy(&out.stderr)));
                continue;
            }
            let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
            let d = json_differences(&references[usize::from(reference_path)], &ours, tol, &VOLATILE);
            if !d.is_empty() {
                failures.push(format!(
                    "{} ({}, reference path {reference_path}): {} differences, first: {}",
                    f["file"],
                    f["writer"],
                    d.len(),
                    d[..d.len().min(3)].join("; ")
                ));
            }
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} fits compared");
    assert!(failures.is_empty(), "{} of {checked} fits differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn damaged_files_are_refused_naming_the_file_and_the_place() {
    let (dir, m) = corpus();
    let model = m["model"].as_str().unwrap();
    let mut failures = Vec::new();
    let damaged: Vec<&Value> = m["files"].as_array().unwrap().iter().filter(|f| f["expect"] == "error").collect();
    assert!(damaged.len() >= 8);
    for f in damaged {
        let name = f["file"].as_str().unwrap();
        for reference_path in [false, true] {
            let out = run(&dir.join(name), model, &[], reference_path);
            let err = String::from_utf8_lossy(&out.stderr);
            let wanted = f["error"].as_str().unwrap();
            if out.status.code() != Some(1) || !err.contains(name) || !err.contains(wanted) || !out.stdout.is_empty() {
                failures.push(format!(
                    "{name} ({}, reference path {reference_path}): exit {:?}, stderr {err:?}, wanted {wanted:?}",
                    f["writer"],
                    out.status.code()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_checksummed_page_with_flipped_bytes_is_refused_on_every_path() {
    // The issue's worst case: without verification the fit printed other
    // coefficients. The message names the row group and the column.
    let (dir, m) = corpus();
    let model = m["model"].as_str().unwrap();
    for (file, column) in [
        ("damaged-checksum-float.parquet", "rent_c"),
        ("damaged-checksum-flag.parquet", "has_washer_dryer"),
        ("damaged-checksum-plain.parquet", "size_sqft"),
    ] {
        for reference_path in [false, true] {
            let out = run(&dir.join(file), model, &[], reference_path);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{file}: {err}");
            let want = format!(
                "{file}: row group 0: column '{column}': a page's CRC-32 checksum does not match its bytes: the file is damaged"
            );
            assert!(err.contains(&want), "{file} (reference path {reference_path}): {err}");
        }
    }
}

#[test]
fn types_from_real_schemas_read_as_their_values() {
    let (dir, m) = corpus();
    let t = &m["types"];
    let numeric: Vec<&str> = t["numeric"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let categorical: Vec<&str> = t["categorical"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let formula = |p: &str| {
        let mut terms: Vec<String> = numeric.iter().map(|n| format!("{p}_{n}")).collect();
        terms.extend(categorical.iter().map(|n| format!("C({p}_{n})")));
        format!("y ~ {}", terms.join(" + "))
    };
    for file in t["files"].as_array().unwrap() {
        let path = dir.join(file.as_str().unwrap());
        for reference_path in [false, true] {
            let typed = fit(&path, &formula("a"), &[], reference_path);
            let plain = fit(&path, &formula("r"), &[], reference_path);
            // The same values as float64 (pyarrow's conversion) and strings:
            // the same fit, column for column (names differ by prefix).
            assert_eq!(typed["nobs"], plain["nobs"]);
            for key in ["params", "bse", "pvalues"] {
                let a: Vec<&Value> = typed[key].as_object().unwrap().values().collect();
                let b: Vec<&Value> = plain[key].as_object().unwrap().values().collect();
                assert_eq!(a.len(), 1 + numeric.len() + 1 + 2 + 3, "{file}: {key}");
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    let d = json_differences(x, y, 1e-12, &[]);
                    assert!(d.is_empty(), "{file}: {key}[{i}]: {x} vs {y}");
                }
            }
            assert!(typed["params"]["C(a_bool)[T.True]"].is_number());
        }
    }
}

#[test]
fn dates_and_timestamps_are_refused_naming_column_and_type() {
    let (dir, m) = corpus();
    for file in m["types"]["files"].as_array().unwrap() {
        let file = file.as_str().unwrap();
        for (col, ty) in [("a_date", "Date32"), ("a_ts", "Timestamp(ms)")] {
            let out = run(&dir.join(file), &format!("y ~ {col}"), &[], false);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(
                err.contains(&format!("{file}: column '{col}' has type {ty}, which cannot be used as a number")),
                "{err}"
            );
        }
    }
}

#[test]
fn lz4_with_hadoop_framing_and_raw_both_read() {
    // pyarrow, DuckDB and polars write LZ4_RAW; the older LZ4 codec (Hadoop
    // framing) comes from parquet-mr and arrow-rs: written here by arrow-rs
    // from the reference table.
    use parquet::basic::Compression;
    let (dir, m) = corpus();
    let model = m["model"].as_str().unwrap();
    let reference_file = dir.join(m["reference"].as_str().unwrap());
    let reader = arrow::ipc::reader::FileReader::try_new(std::fs::File::open(&reference_file).unwrap(), None).unwrap();
    let schema = reader.schema();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let reference = fit(&reference_file, model, &[], false);
    for (name, codec) in [("hadoop", Compression::LZ4), ("raw", Compression::LZ4_RAW)] {
        let path = dir.join(format!("arrow-rs-lz4-{name}.parquet"));
        let props = parquet::file::properties::WriterProperties::builder().set_compression(codec).build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), Some(props))
                .unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        let meta = gramfit::source::parquet_metadata(&gramfit::source::Input::new(
            path.clone(),
            gramfit::source::SourceKind::Parquet,
        ))
        .unwrap();
        assert_eq!(meta.metadata().row_group(0).column(0).compression(), codec);
        let d = json_differences(&reference, &fit(&path, model, &[], false), 0.0, &VOLATILE);
        assert!(d.is_empty(), "{name}: {d:?}");
    }
}

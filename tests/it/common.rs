//! Helpers shared by the integration tests.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shared reference datasets folder; panics loudly when it is missing.
pub fn shared_datasets() -> PathBuf {
    let dir = std::env::var_os("GRAMFIT_SHARED_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    assert!(
        dir.join("nist/certified.json").is_file() && dir.join("streeteasy/streeteasy.csv").is_file(),
        "\n\n*** REFERENCE DATA MISSING ***\nThe shared datasets folder was not found at {}.\n\
         These tests need the NIST StRD sets and the StreetEasy listings that live beside the repo\n\
         (../shared/datasets). Set GRAMFIT_SHARED_DATASETS to their location.\n",
        dir.display()
    );
    dir
}

pub fn streeteasy() -> PathBuf {
    shared_datasets().join("streeteasy/streeteasy.csv")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gramfit")
}

/// Run gramfit with arguments; returns the output.
pub fn gramfit<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(bin()).args(args).output().expect("run gramfit")
}

/// Run gramfit and parse its JSON stdout; panics with stderr on failure.
pub fn gramfit_json<I, S>(args: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = gramfit(args);
    assert!(out.status.success(), "gramfit failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// The instruction-set level CI says this run must have
/// (`GRAMFIT_EXPECT_ISA`, set by `.ci/run` for each path it forces).
pub fn expected_isa() -> Option<gramfit::isa::Level> {
    std::env::var("GRAMFIT_EXPECT_ISA")
        .ok()
        .map(|v| gramfit::isa::Level::parse(&v).unwrap_or_else(|| panic!("GRAMFIT_EXPECT_ISA={v} is not a level")))
}

/// Whether a test of kernels that need `level` can run on this CPU; when
/// it cannot, it is skipped with a loud note — unless CI expects a run at
/// that level, which then fails instead.
pub fn cpu_has(level: gramfit::isa::Level, what: &str) -> bool {
    if gramfit::isa::Level::detected() >= level {
        return true;
    }
    if expected_isa().is_some_and(|e| e >= level) {
        panic!("{what} needs {level}, which GRAMFIT_EXPECT_ISA says this run has, but the CPU lacks it");
    }
    eprintln!("*** no {level} on this CPU: {what} is not tested ***");
    false
}

/// Log relative error (NIST's accuracy measure), capped at 15; a value
/// that is not a finite number (a NaN, a missing figure read as NaN) has no
/// correct digit: 0.
pub fn lre(estimate: f64, certified: f64) -> f64 {
    if !estimate.is_finite() || !certified.is_finite() {
        return 0.0;
    }
    let err = if certified == 0.0 { estimate.abs() } else { ((estimate - certified) / certified).abs() };
    if err == 0.0 {
        15.0
    } else {
        (-err.log10()).clamp(0.0, 15.0)
    }
}

/// Relative difference with an absolute floor for values near zero;
/// infinite when either is NaN (so that `rel_diff(..) <= tol` fails and
/// `rel_diff(..) > tol` holds: a NaN never passes a comparison).
pub fn rel_diff(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::INFINITY;
    }
    if a == b {
        return 0.0;
    }
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

/// Every difference between two reports' JSON (keys in `skip` left out at
/// any depth): a missing key, a type that differs, a number and a null, or
/// two numbers further apart than `tol` relative (0: bit for bit).
pub fn json_differences(a: &Value, b: &Value, tol: f64, skip: &[&str]) -> Vec<String> {
    fn walk(a: &Value, b: &Value, path: &str, tol: f64, skip: &[&str], out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, v) in x {
                    if skip.contains(&k.as_str()) {
                        continue;
                    }
                    match y.get(k) {
                        Some(w) => walk(v, w, &format!("{path}.{k}"), tol, skip, out),
                        None => out.push(format!("{path}.{k}: missing on the right")),
                    }
                }
                for k in y.keys() {
                    if !skip.contains(&k.as_str()) && !x.contains_key(k) {
                        out.push(format!("{path}.{k}: missing on the left"));
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    out.push(format!("{path}: {} vs {} entries", x.len(), y.len()));
                    return;
                }
                for (i, (v, w)) in x.iter().zip(y).enumerate() {
                    walk(v, w, &format!("{path}[{i}]"), tol, skip, out);
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                let (p, q) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                let ok = if tol == 0.0 { p.to_bits() == q.to_bits() } else { rel_diff(p, q) <= tol };
                if !ok {
                    out.push(format!("{path}: {p:e} vs {q:e}"));
                }
            }
            _ => {
                if a != b {
                    out.push(format!("{path}: {a} vs {b}"));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(a, b, "", tol, skip, &mut out);
    out
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Writer properties of the page readers' property tests: page version,
/// codec (0 none, 1 snappy, else zstd), rows per data page and per row
/// group; `plain`: columns written without a dictionary.
pub fn page_test_props(
    v2: bool,
    codec: u8,
    page_rows: usize,
    group_rows: usize,
    plain: &[&str],
) -> parquet::file::properties::WriterProperties {
    page_test_builder(v2, codec, page_rows, group_rows, plain).build()
}

/// [`page_test_props`] before `build`, for more settings.
pub fn page_test_builder(
    v2: bool,
    codec: u8,
    page_rows: usize,
    group_rows: usize,
    plain: &[&str],
) -> parquet::file::properties::WriterPropertiesBuilder {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{WriterProperties, WriterVersion};
    let mut b = WriterProperties::builder()
        .set_writer_version(if v2 { WriterVersion::PARQUET_2_0 } else { WriterVersion::PARQUET_1_0 })
        .set_compression(match codec {
            0 => Compression::UNCOMPRESSED,
            1 => Compression::SNAPPY,
            _ => Compression::ZSTD(ZstdLevel::default()),
        })
        .set_data_page_row_count_limit(page_rows)
        .set_write_batch_size(page_rows.min(1024))
        .set_max_row_group_row_count(Some(group_rows));
    for c in plain {
        b = b.set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(*c), false);
    }
    b
}

/// Run gramfit and expect it to fail with exit code 1 and one clear line
/// on stderr that holds every needle (no panic).
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = gramfit(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected '{n}' in: {err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
}

//! The engine: formats agree, results are bit-identical across thread counts
//! and batch sizes, and bad inputs get clear errors.

use crate::common::{fails_with, gramfit, gramfit_json, rel_diff, tempdir};
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

/// gzip (one or several members) and zstd CSV, by extension or by content,
/// read as the plain file does; a truncated gzip is a clear error.
#[test]
fn compressed_csv_reads_as_plain() {
    use std::io::Write as _;
    let tmp = tempdir();
    let d = tmp.path();
    let csv = d.join("l.csv");
    generate::write_csv(&csv, 4, 0, 12_000).unwrap();
    let text = std::fs::read(&csv).unwrap();
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(d.join("l.csv.gz"), gz(&text)).unwrap();
    std::fs::write(d.join("l.csv.zst"), zstd::encode_all(&text[..], 3).unwrap()).unwrap();
    // A gzip file of two members (header + first half, second half), as
    // `cat a.gz b.gz` makes, and a gzip file named plain .csv.
    let cut = text.len() / 2 + text[text.len() / 2..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut two = gz(&text[..cut]);
    two.extend(gz(&text[cut..]));
    std::fs::write(d.join("two-members.csv.gz"), two).unwrap();
    std::fs::write(d.join("mislabelled.csv"), gz(&text)).unwrap();
    let reference = numbers(&gramfit_json(["fit", s(&csv), "-f", F, "--format", "json"]));
    for name in ["l.csv.gz", "l.csv.zst", "two-members.csv.gz", "mislabelled.csv"] {
        let v = numbers(&gramfit_json(["fit", s(&d.join(name)), "-f", F, "--format", "json"]));
        assert_eq!(v, reference, "{name}");
    }
    // A directory picks up compressed CSV files.
    let dir = d.join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(d.join("l.csv.zst"), dir.join("l.csv.zst")).unwrap();
    let v = gramfit_json(["fit", s(&dir), "-f", F, "--format", "json"]);
    assert_eq!(v["rows"]["read"], 12_000);
    let bytes = std::fs::read(d.join("l.csv.gz")).unwrap();
    let trunc = d.join("truncated.csv.gz");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&["fit", s(&trunc), "-f", "rent ~ size_sqft"], &["truncated.csv.gz"]);
}

/// The in-place kernels (plain numeric models: first pass read straight
/// from the Arrow buffers, second pass without design blocks) against the
/// reference path that builds every design block (`GRAMFIT_NO_DIRECT=1`):
/// the first pass is exact on both, so every first-pass figure is the same
/// bits; second-pass figures agree to rounding. Nulls, integer and float
/// columns, halves, and clusters by few (≤ 16, vector path) and many levels;
/// elementary functions of columns.
#[test]
fn direct_kernels_match_the_reference_path() {
    let tmp = tempdir();
    let pq = tmp.path().join("l.parquet");
    generate::write_parquet(&pq, 7, 0, 50_000, 8_000).unwrap();
    let with_intercept = "rent ~ bedrooms + bathrooms + size_sqft + min_to_subway + floor + building_age_yrs + no_fee + has_doorman + has_gym";
    let without = "rent ~ 0 + bedrooms + size_sqft + has_doorman + has_gym + no_fee";
    // Categorical factors: cells from level codes (first pass), the
    // general path in the second.
    let factors = "rent ~ size_sqft + C(borough) + bedrooms + C(neighborhood) + has_gym";
    // Eight 0/1 flags: patterns of a whole byte, beside a factor's
    // columns in the robust second pass.
    let flags = "rent ~ size_sqft + no_fee + has_roofdeck + has_washer_dryer + has_doorman + has_elevator + has_dishwasher + has_patio + has_gym + C(borough)";
    // One factor of more than 16 levels beside floats and flags: sums per
    // level from tables (floats) and per-row flag lookups.
    let many_levels = "rent ~ size_sqft + bedrooms + has_gym + no_fee + C(neighborhood)";
    // One factor of at most 16 levels: masked sums per level.
    let few_levels = "rent ~ size_sqft + has_gym + C(borough)";
    // Elementary functions of columns: mapped arrays read in place (log,
    // log1p of a column holding zeros, a non-integer power, sqrt via ½).
    let transformed = "np.log(rent) ~ np.log(size_sqft) + np.log1p(floor) + I(min_to_subway ** 1.5) + I(building_age_yrs ** 0.5) + np.exp(bathrooms) + has_gym + C(borough)";
    // Functions of expressions: evaluated as the block does, read in place.
    let expressions = "np.log(rent / size_sqft) ~ np.exp(-min_to_subway / 7) + I((floor + 1) ** 1.5) + np.log(building_age_yrs + 0.5) + bedrooms";
    // Sums, products and whole powers of whole numbers: doubles, read in
    // place; a square too long for the exact kernels builds the block.
    let exact_valued = "I(rent - 3000) ~ I(min_to_subway ** 2) + I(building_age_yrs - 50) + np.abs(floor - 3) + I(bedrooms * 2) + I(size_sqft ** 2) + has_gym + C(borough)";
    // Products of numeric factors (columns with nulls among them): read
    // in place as the expressions of their products.
    let products = "rent ~ size_sqft:bedrooms + bathrooms + floor:min_to_subway + np.log(size_sqft):has_gym + bedrooms:bathrooms:floor + C(borough)";
    // Terms that are quotients (by constants, by columns, negative
    // powers; nulls in floor): doubles, read in place.
    let quotients = "I(rent / 100) ~ I(size_sqft / 1000) + I(size_sqft / (bedrooms + 1)) + I(1 / (min_to_subway + 1)) + I((floor + 1) ** -1) + I(building_age_yrs / 7) + has_gym + C(borough)";
    // Numeric factors times a categorical one's levels: full cells (no
    // main effect), reduced ones beside the main effects, a 0/1 column, a
    // product of numeric factors, a column with nulls, an integer factor.
    let by_level = "rent ~ size_sqft * C(borough) + has_gym:C(borough) + np.log(size_sqft):C(borough) + size_sqft:has_gym:C(borough) + floor:C(bedrooms) + min_to_subway:C(borough) + np.log(floor + 1):C(borough) + bathrooms";
    // Quarters: products and squares of columns of halves.
    let quarters = "rent ~ bedrooms:bathrooms + I(bathrooms ** 2) + I(bedrooms / 4) + size_sqft + C(borough)";
    // Products of two factors: full cells (no main effects), reduced ones
    // beside them, a yes/no factor, many pairs, a factor with nulls.
    let crossed = "rent ~ C(borough):C(bedrooms) + C(borough) * C(has_doorman) + C(borough):C(neighborhood) + C(floor):C(has_gym) + size_sqft + has_gym";
    let models = [with_intercept, without, factors, flags, many_levels, few_levels, transformed, expressions];
    for f in models.into_iter().chain([exact_valued, products, quotients, by_level, quarters, crossed]) {
        compare_direct_and_reference(&pq, f, &["borough", "neighborhood"]);
    }
}

/// Row groups of several chunks, whose column layout changes on the way: a
/// column 0/1 in the first chunks (read as bits, grouped in patterns) and
/// holding 2s later (read as numbers); cluster levels met in a different
/// order in each chunk, and new ones late. The robust meats and the cluster
/// score sums are summed per pattern across chunks of one layout and
/// collapsed when it changes; they must still match the reference path.
#[test]
fn robust_sums_span_chunks_and_layout_changes() {
    use arrow::array::{Float64Array, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;
    let rows = 60_000usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut y, mut x, mut b, mut f) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Clusters: levels met in a different order in each chunk, two of them
    // only from row 40,000 on, and a few rows without a cluster.
    let mut g: Vec<Option<String>> = Vec::new();
    // Without nulls, Parquet's dictionary keys are the codes: `k` with a
    // few levels, `h` with hundreds (the cluster tables split the pattern
    // of flags between a main and a side table), both with new levels in
    // the second row group and in a different order in each.
    let (mut k, mut h) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let levels = if r < 40_000 { 5 } else { 7 };
        g.push(match next() % 200 {
            0 => None,
            v => Some(format!("g{}", v % levels)),
        });
        k.push(format!("k{}", next() % levels));
        h.push(format!("h{}", next() % (100 * levels)));
        let xv = (next() % 1000) as f64 / 8.0;
        // 0/1 until row 20,000 of each row group of 30,000, then 0, 1 or 2.
        let bv = (next() % if r % 30_000 < 20_000 { 2 } else { 3 }) as i64;
        let fv = (next() % 2) as i64;
        let noise = (next() % 1_000) as f64 / 100.0;
        x.push(xv);
        b.push(bv);
        f.push(fv);
        y.push(3.0 + 0.5 * xv + 2.0 * bv as f64 - fv as f64 + noise * (1.0 + xv / 50.0));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Float64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("b", DataType::Int64, false),
        Field::new("f", DataType::Int64, false),
        Field::new("g", DataType::Utf8, true),
        Field::new("k", DataType::Utf8, false),
        Field::new("h", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from(y)),
            Arc::new(Float64Array::from(x)),
            Arc::new(Int64Array::from(b)),
            Arc::new(Int64Array::from(f)),
            Arc::new(arrow::array::StringArray::from(g)),
            Arc::new(arrow::array::StringArray::from(k)),
            Arc::new(arrow::array::StringArray::from(h)),
        ],
    )
    .unwrap();
    let tmp = tempdir();
    let pq = tmp.path().join("layouts.parquet");
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(30_000)).build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), schema.clone(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    // A dictionary page too small for `h`'s levels: the writer falls back to
    // plain pages within a row group, and the reader gives each batch of
    // those a dictionary of its own (keys no longer mean the same level).
    let fallback = tmp.path().join("fallback.parquet");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(30_000))
        .set_dictionary_page_size_limit(1024)
        .set_data_page_row_count_limit(2_000)
        .set_write_batch_size(2_000)
        .build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&fallback).unwrap(), schema.clone(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    // Row groups of 10,000 rows: `b` holds only 0 and 1 in two of every
    // three (read as bits there) and 0, 1 and 2 in the third (an Int64
    // array): the layout changes between row groups too.
    let mixed = tmp.path().join("mixed.parquet");
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(10_000)).build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&mixed).unwrap(), schema.clone(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    // As CSV the levels are numbered in each chunk's order of appearance
    // (Parquet's come from a dictionary per row group), so the chunks' codes
    // are mapped onto the table's levels, which grow as new ones appear.
    let csv = tmp.path().join("layouts.csv");
    let mut out = arrow::csv::Writer::new(std::fs::File::create(&csv).unwrap());
    out.write(&batch).unwrap();
    drop(out);
    for file in [&pq, &fallback, &mixed, &csv] {
        compare_direct_and_reference(file, "y ~ x + b + f", &["g", "k", "h"]);
        compare_direct_and_reference(file, "y ~ 0 + x + f + b", &["g", "k", "h"]);
    }
}

pub(crate) fn compare_direct_and_reference(pq: &Path, f: &str, clusters: &[&str]) {
    let run = |extra: &[&str], reference: bool| -> Value {
        let mut cmd = Command::new(crate::common::bin());
        cmd.args(["fit", s(pq), "-f", f, "--format", "json"]).args(extra);
        if reference {
            cmd.env("GRAMFIT_NO_DIRECT", "1");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        numbers(&serde_json::from_slice(&out.stdout).unwrap())
    };
    let first_pass = ["params", "rsquared", "rsquared_adj", "llf", "aic", "bic", "ssr", "condition_number"];
    let mut runs: Vec<Vec<&str>> =
        ["nonrobust", "HC0", "HC1", "HC2", "HC3"].iter().map(|c| vec!["--cov-type", *c]).collect();
    runs.extend(clusters.iter().map(|c| vec!["--cov-type", "cluster", "--cluster", *c]));
    for extra in &runs {
        let extra = &extra[..];
        let (direct, reference) = (run(extra, false), run(extra, true));
        for k in first_pass {
            assert_eq!(direct[k], reference[k], "{extra:?}: {k}");
        }
        let mut compared = 0;
        for k in ["bse", "tvalues", "omnibus", "skew", "kurtosis", "jarque_bera", "durbin_watson"] {
            let (a, b) = (&direct[k], &reference[k]);
            // Null (an undefined HC2/HC3 error) must be null on both sides.
            let pairs: Vec<(f64, f64)> = match (a, b) {
                (Value::Object(a), Value::Object(b)) => a
                    .iter()
                    .filter_map(|(n, x)| {
                        assert_eq!(x.is_null(), b[n].is_null(), "{extra:?}: {k}[{n}]");
                        Some((x.as_f64()?, b[n].as_f64().unwrap()))
                    })
                    .collect(),
                _ => vec![(a.as_f64().unwrap(), b.as_f64().unwrap())],
            };
            // With five clusters (borough) and ten coefficients the meat has
            // rank 4: the sandwich amplifies the rounding of the score sums,
            // whose terms cancel (a different summation order moves the
            // last ~8 digits of some errors; statsmodels is no closer).
            let tol = if extra.contains(&"borough") { 1e-7 } else { 1e-9 };
            for (x, y) in pairs {
                assert!(rel_diff(x, y) <= tol, "{extra:?}: {k} {x:e} vs {y:e}");
                compared += 1;
            }
        }
        assert!(compared > 10, "{f} {extra:?}: compared {compared} figures");
    }
}

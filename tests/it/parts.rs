//! A fit in parts (the Python package's Accumulator and its Spark and Dask
//! fits): tables lent from memory, a first pass per part, states merged in
//! order, second-pass sums per part — the same report as one `gramfit fit`
//! over the parts in order.

use clap::Parser;
use gramfit::cli::{Cli, Command, FitArgs, ReportArgs};
use gramfit::source::memory::{self, MemoryTable};

fn fit_args(argv: &[&str]) -> FitArgs {
    let Command::Fit(a) = Cli::parse_from(argv).command else { panic!("a fit") };
    a
}

fn report_args(extra: &[&str]) -> ReportArgs {
    let mut argv = vec!["gramfit", "summary", "-"];
    argv.extend_from_slice(extra);
    let Command::Summary(a) = Cli::parse_from(&argv).command else { panic!("a summary") };
    a.report
}

/// The listings as record batches, read by arrow-rs's CSV reader (not by
/// gramfit's): `rows` rows a batch.
fn listings_batches(rows: usize) -> (arrow::datatypes::SchemaRef, Vec<arrow::array::RecordBatch>) {
    use arrow::csv::reader::Format;
    use std::io::Seek;
    let mut f = std::fs::File::open(crate::common::streeteasy()).unwrap();
    let (schema, _) = Format::default().with_header(true).infer_schema(&mut f, None).unwrap();
    f.rewind().unwrap();
    let schema = std::sync::Arc::new(schema);
    let r = arrow::csv::ReaderBuilder::new(schema.clone()).with_header(true).with_batch_size(rows).build(f).unwrap();
    (schema, r.map(Result::unwrap).collect())
}

/// `batches` lent as parts of the runs `runs` (in row order), labelled
/// `<part i>`.
fn lend_parts(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[arrow::array::RecordBatch],
    runs: &[std::ops::Range<usize>],
) -> Vec<memory::Lent> {
    let part = |i: usize, r: &std::ops::Range<usize>| MemoryTable {
        label: format!("<part {i}>"),
        schema: schema.clone(),
        batches: batches[r.clone()].to_vec(),
    };
    runs.iter().enumerate().map(|(i, r)| memory::lend(part(i, r))).collect()
}

/// `gramfit fit INPUT -q -f FORMULA EXTRA…`.
fn fit_of(input: &str, formula: &str, extra: &[&str]) -> FitArgs {
    let mut argv = vec!["gramfit", "fit", input, "-q", "-f", formula];
    argv.extend_from_slice(extra);
    fit_args(&argv)
}

fn json(r: &gramfit::report::Report) -> serde_json::Value {
    serde_json::from_str(&r.render(gramfit::report::Format::Json)).unwrap()
}

/// The second pass of `merged` in the parts `lent` (each through the
/// bytes a task returns), finished on a copy of it as `cov` asks: the
/// report, and the state it leaves.
fn finish_in_parts(
    merged: &gramfit::state::State,
    lent: &[memory::Lent],
    part_args: &dyn Fn(&str, &[&str]) -> FitArgs,
    cov: &[&str],
) -> (serde_json::Value, gramfit::state::State) {
    let parts: Vec<_> = lent
        .iter()
        .map(|l| {
            let part = gramfit::app::residual_part(merged, &part_args(l.name(), cov), None).unwrap();
            gramfit::app::decode_residual_part(&gramfit::app::encode_residual_part(&part)).unwrap()
        })
        .collect();
    let mut st = merged.clone();
    let report = json(&gramfit::app::finish_parts(&mut st, &parts, &report_args(cov)).unwrap());
    (report, st)
}

fn assert_close(a: &serde_json::Value, b: &serde_json::Value, key: &str, tol: f64) {
    let (a, b) = (&a[key], &b[key]);
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{key}: names");
            for (k, v) in x {
                if v.is_null() && y[k].is_null() {
                    continue; // aliased in both
                }
                let (Some(p), Some(q)) = (v.as_f64(), y[k].as_f64()) else { panic!("{key}[{k}]: {v} vs {}", y[k]) };
                assert!((p - q).abs() <= tol * q.abs().max(1e-300), "{key}[{k}]: {p} vs {q}");
            }
        }
        _ => {
            let (p, q) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((p - q).abs() <= tol * q.abs().max(1e-300), "{key}: {p} vs {q}");
        }
    }
}

const FORMULA: &str = "rent ~ size_sqft + bedrooms + np.log(min_to_subway + 1) + has_washer_dryer + C(borough)";

#[test]
fn parts_merged_in_order_report_what_one_fit_over_the_file_reports() {
    let (schema, batches) = listings_batches(700);
    let file = crate::common::streeteasy();
    let whole = fit_args(&["gramfit", "fit", file.to_str().unwrap(), "-q", "-f", FORMULA, "--cov-type", "HC1"]);
    let expected = json(&gramfit::app::fit_report(&whole).unwrap());
    // Three parts of unequal sizes, in row order.
    let lent = lend_parts(&schema, &batches, &[0..2, 2..3, 3..batches.len()]);
    let argv = |name: &str| fit_of(name, FORMULA, &["--cov-type", "HC1", "--threads", "2"]);
    let states: Vec<_> =
        lent.iter().map(|l| (l.name().to_string(), gramfit::app::first_pass(&argv(l.name()), None).unwrap())).collect();
    let mut merged = gramfit::app::merge_states(states).unwrap();
    let parts: Vec<_> = lent
        .iter()
        .map(|l| {
            let part = gramfit::app::residual_part(&merged, &argv(l.name()), None).unwrap();
            // Through the bytes a task returns.
            gramfit::app::decode_residual_part(&gramfit::app::encode_residual_part(&part)).unwrap()
        })
        .collect();
    let report = report_args(&["--cov-type", "HC1"]);
    let ours = json(&gramfit::app::finish_parts(&mut merged, &parts, &report).unwrap());
    assert_eq!(ours["nobs"], expected["nobs"]);
    for key in ["params", "bse", "pvalues"] {
        assert_close(&ours, &expected, key, 1e-12);
    }
    for key in ["rsquared", "llf", "omnibus", "skew", "kurtosis", "jarque_bera", "durbin_watson"] {
        assert_close(&ours, &expected, key, 1e-12);
    }
    // The robust Wald F inverts the sandwich, whose meat is an f64 sum
    // over other runs of rows here than the file's blocks: its rounding
    // (~1e-16) comes back amplified by the sandwich's condition (~1e4).
    assert_close(&ours, &expected, "fvalue", 1e-10);
    // The lent tables are listed by their labels.
    let text = gramfit::app::state_report(&merged, &report).unwrap().render(gramfit::report::Format::Text);
    assert!(text.contains("<part 0>") && text.contains("<part 2>"), "{text}");
    // A part's sums applied twice are refused (the rows would count twice).
    let twice = [parts.clone(), parts].concat();
    let e = gramfit::app::finish_parts(&mut merged, &twice, &report).unwrap_err().to_string();
    assert!(e.contains("the parts must be the fit's rows, each once"), "{e}");
}

#[test]
fn a_lent_table_is_refused_where_files_are_needed_and_its_errors_name_it() {
    let (schema, batches) = listings_batches(5000);
    let lent = memory::lend(MemoryTable { label: "<pandas DataFrame>".into(), schema, batches });
    let a = fit_args(&["gramfit", "fit", lent.name(), "-q", "-f", "rent ~ size_sqft + C(nope)"]);
    let e = gramfit::app::fit_report(&a).unwrap_err().to_string();
    assert!(e.contains("no column named 'nope'"), "{e}");
    // A name no table is lent under.
    let a = fit_args(&["gramfit", "fit", "memory:999999", "-q", "-f", "rent ~ size_sqft"]);
    let e = gramfit::app::fit_report(&a).unwrap_err().to_string();
    assert_eq!(e, "memory:999999: no table is lent under this name");
    // Withdrawn when the guard drops.
    let name = lent.name().to_string();
    drop(lent);
    assert!(memory::lent(&name).is_none());
    // Second-pass parts' bytes are checked.
    let e = gramfit::app::decode_residual_part(b"GFRESID\0 garbage bytes").unwrap_err().to_string();
    assert!(e.starts_with("not a gramfit second-pass part"), "{e}");
}

#[test]
fn absorbed_parts_merge_to_the_absorbed_fit_with_every_covariance_and_grouped_fits_are_refused() {
    // Parts of 1,800 rows: a neighborhood's rows are spread over parts,
    // some seen by one part only (singletons are decided on the merged
    // counts).
    let (schema, batches) = listings_batches(900);
    let file = crate::common::streeteasy();
    let f = file.to_str().unwrap();
    let formula = "rent ~ size_sqft + bedrooms + has_washer_dryer | neighborhood";
    let runs: Vec<_> = (0..batches.len()).step_by(2).map(|i| i..(i + 2).min(batches.len())).collect();
    let lent = lend_parts(&schema, &batches, &runs);
    let part_args = |name: &str, cov: &[&str]| fit_of(name, formula, cov);
    let states: Vec<_> = lent
        .iter()
        .map(|l| (l.name().to_string(), gramfit::app::first_pass(&part_args(l.name(), &[]), None).unwrap()))
        .collect();
    let merged = gramfit::app::merge_states(states).unwrap();
    // iid errors: no second pass.
    let whole = fit_args(&["gramfit", "fit", f, "-q", "-f", formula, "--no-second-pass"]);
    let expected = json(&gramfit::app::fit_report(&whole).unwrap());
    let ours = json(&gramfit::app::state_report(&merged, &report_args(&[])).unwrap());
    assert_eq!(ours["nobs"], expected["nobs"]);
    assert_eq!(ours["fixed_effects"], expected["fixed_effects"]);
    for key in ["params", "bse"] {
        assert_close(&ours, &expected, key, 1e-12);
    }
    // Robust and clustered errors: the second pass in parts, its sums
    // merged in row order — what one fit's second pass gives. Clusters
    // (boroughs, neighborhoods) span parts.
    for cov in [
        &["--cov-type", "HC1"][..],
        &["--cov-type", "HC0"],
        &["--cov-type", "cluster"],
        &["--cov-type", "cluster", "--cluster", "borough"],
    ] {
        let mut argv = vec!["gramfit", "fit", f, "-q", "-f", formula];
        argv.extend_from_slice(cov);
        let expected = json(&gramfit::app::fit_report(&fit_args(&argv)).unwrap());
        let (ours, st) = finish_in_parts(&merged, &lent, &part_args, cov);
        for key in ["cov_type", "cluster", "df_k", "nobs"] {
            assert_eq!(ours[key], expected[key], "{cov:?} {key}");
        }
        for key in ["params", "bse", "tvalues", "pvalues"] {
            assert_close(&ours, &expected, key, 1e-10);
        }
        // An absorbed state keeps no robust covariance: its summary is iid.
        assert!(st.residuals.is_none());
    }
    // HC2/HC3 are refused before any work, as `fit` refuses them.
    let e = gramfit::app::first_pass(&part_args(lent[0].name(), &["--cov-type", "HC3"]), None).unwrap_err().to_string();
    assert!(e.contains("--cov-type HC3 is not available with absorbed fixed effects"), "{e}");
    // A plain model's parts are not an absorbed fit's.
    let plain = fit_args(&["gramfit", "fit", lent[0].name(), "-q", "-f", "rent ~ size_sqft", "--cov-type", "HC1"]);
    let plain_state = gramfit::app::first_pass(&plain, None).unwrap();
    let wrong: Vec<_> = lent
        .iter()
        .map(|l| {
            let a = fit_args(&["gramfit", "fit", l.name(), "-q", "-f", "rent ~ size_sqft", "--cov-type", "HC1"]);
            gramfit::app::residual_part(&plain_state, &a, None).unwrap()
        })
        .collect();
    let mut st = merged.clone();
    let e = gramfit::app::finish_parts(&mut st, &wrong, &report_args(&["--cov-type", "HC1"])).unwrap_err().to_string();
    assert_eq!(e, "the second pass's parts are not of this fit's kind (plain or absorbed)");
    let a = fit_args(&["gramfit", "fit", f, "-q", "-f", "rent ~ size_sqft", "--by", "borough"]);
    let e = gramfit::app::first_pass(&a, None).unwrap_err().to_string();
    assert!(e.contains("takes no --by"), "{e}");
}

#[test]
fn a_parquet_file_split_by_row_groups_merges_to_the_whole_files_fit() {
    let (schema, batches) = listings_batches(1000);
    let tmp = crate::common::tempdir();
    let path = tmp.path().join("listings.parquet");
    let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(1000)).build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, Some(props)).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    let p = path.to_str().unwrap();
    let args = fit_args(&["gramfit", "fit", p, "-q", "-f", FORMULA, "--cov-type", "HC3"]);
    let expected = json(&gramfit::app::fit_report(&args).unwrap());
    let ranges = [0..2, 2..3, 3..5];
    let states: Vec<_> =
        ranges.iter().map(|r| (format!("{r:?}"), gramfit::app::first_pass(&args, Some(r.clone())).unwrap())).collect();
    let mut merged = gramfit::app::merge_states(states).unwrap();
    let parts: Vec<_> =
        ranges.iter().map(|r| gramfit::app::residual_part(&merged, &args, Some(r.clone())).unwrap()).collect();
    let report = report_args(&["--cov-type", "HC3"]);
    let ours = json(&gramfit::app::finish_parts(&mut merged, &parts, &report).unwrap());
    assert_eq!(ours["nobs"], expected["nobs"]);
    for key in ["params", "bse", "rsquared", "llf", "durbin_watson", "omnibus"] {
        assert_close(&ours, &expected, key, 1e-12);
    }
    // The parts are listed by file and row groups.
    let text = gramfit::app::state_report(&merged, &report).unwrap().render(gramfit::report::Format::Text);
    assert!(text.contains("listings.parquet (row groups 2..3)"), "{text}");
    // Row groups the file does not have; a CSV file has none.
    let e = gramfit::app::first_pass(&args, Some(4..9)).unwrap_err().to_string();
    assert!(e.contains("row groups 4..9 asked for, the file has 5"), "{e}");
    let csv = crate::common::streeteasy();
    let args = fit_args(&["gramfit", "fit", csv.to_str().unwrap(), "-q", "-f", FORMULA]);
    let e = gramfit::app::first_pass(&args, Some(0..1)).unwrap_err().to_string();
    assert!(e.contains("row groups are parts of Parquet files only"), "{e}");
}

/// A table of `rows` rows whose factor `g` has a level per row, numbered
/// from `first`.
fn many_levels_table(label: &str, first: usize, rows: usize) -> MemoryTable {
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("y", DataType::Float64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("g", DataType::Utf8, false),
    ]));
    let x: Vec<f64> = (0..rows).map(|i| ((i * 7919) % 1000) as f64 / 10.0).collect();
    let y: Vec<f64> = x.iter().enumerate().map(|(i, v)| 2.0 * v + (i % 13) as f64).collect();
    let g: Vec<String> = (first..first + rows).map(|i| format!("level {i}")).collect();
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(Float64Array::from(y)),
            std::sync::Arc::new(Float64Array::from(x)),
            std::sync::Arc::new(StringArray::from(g)),
        ],
    )
    .unwrap();
    MemoryTable { label: label.into(), schema, batches: vec![batch] }
}

#[test]
fn a_factor_past_the_dense_limit_is_refused_by_a_part_and_by_the_merge_of_parts() {
    let formula = "y ~ x + C(g)";
    let args = |name: &str| fit_args(&["gramfit", "fit", name, "-q", "-f", formula]);
    let big = memory::lend(many_levels_table("<big>", 0, 2_500));
    let e = gramfit::app::first_pass(&args(big.name()), None).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "C(g) has more than 2000 levels: with a fit in parts that sums dummies (an Accumulator made without blocks='COLUMN'"
        ),
        "{e}"
    );
    assert!(e.contains("absorb the factor ('… | g')"), "{e}");
    // Two parts below the limit, past it together.
    let a = memory::lend(many_levels_table("<a>", 0, 1_500));
    let b = memory::lend(many_levels_table("<b>", 1_500, 1_500));
    let states = || {
        [&a, &b]
            .iter()
            .map(|l| (l.name().to_string(), gramfit::app::first_pass(&args(l.name()), None).unwrap()))
            .collect()
    };
    let e = gramfit::app::merge_parts(states()).unwrap_err().to_string();
    assert!(e.starts_with("C(g) has more than 2000 levels"), "{e}");
    // `gramfit merge` of saved states keeps them as they are.
    assert_eq!(gramfit::app::merge_states(states()).unwrap().accumulator.levels[1].len(), 3_000);
}

#[test]
fn parts_with_a_factor_by_blocks_report_what_one_fit_by_blocks_reports() {
    // 93 neighborhoods, past a threshold of 20: `fit` estimates them by
    // blocks; so do the parts, merged, with their second pass.
    let formula = "rent ~ size_sqft + bedrooms + has_washer_dryer + C(neighborhood)";
    let (schema, batches) = listings_batches(700);
    let file = crate::common::streeteasy();
    let lent = lend_parts(&schema, &batches, &[0..2, 2..3, 3..batches.len()]);
    let part_args = |name: &str, cov: &[&str]| fit_of(name, formula, cov);
    let states: Vec<_> = lent
        .iter()
        .map(|l| {
            let st = gramfit::app::first_pass_by_blocks(&part_args(l.name(), &[]), None, "neighborhood").unwrap();
            (l.name().to_string(), st)
        })
        .collect();
    let merged = gramfit::app::merge_parts(states).unwrap();
    for cov in
        [&[][..], &["--cov-type", "HC1"], &["--cov-type", "HC3"], &["--cov-type", "cluster", "--cluster", "borough"]]
    {
        let mut cmd = std::process::Command::new(crate::common::bin());
        cmd.args(["fit", file.to_str().unwrap(), "-q", "--format", "json", "-f", formula]).args(cov);
        let out = cmd.env("GRAMFIT_DENSE_LEVELS", "20").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let expected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (ours, st) = finish_in_parts(&merged, &lent, &part_args, cov);
        assert_eq!(ours["nobs"], expected["nobs"]);
        assert_eq!(ours["cov_type"], expected["cov_type"], "{cov:?}");
        for key in ["params", "bse", "pvalues", "rsquared", "llf", "omnibus", "jarque_bera", "durbin_watson"] {
            assert_close(&ours, &expected, key, 1e-10);
        }
        let notes = ours["gramfit_notes"].to_string();
        assert!(notes.contains("93 levels (more than"), "{notes}");
        // The nonrobust bottom block is kept, as `fit --save` keeps it.
        assert_eq!(st.residuals.is_some(), cov.is_empty(), "{cov:?}");
    }
    // A column that is not such a factor.
    let e =
        gramfit::app::first_pass_by_blocks(&part_args(lent[0].name(), &[]), None, "borough").unwrap_err().to_string();
    assert!(e.contains("'borough' is not a factor of this model that can be estimated by blocks"), "{e}");
    let candidates = gramfit::app::block_candidates(&part_args(lent[0].name(), &[])).unwrap();
    assert_eq!(candidates, ["neighborhood"]);
}

//! `gramfit predict` against statsmodels' `get_prediction(new).summary_frame
//! (alpha)` on held-out StreetEasy listings — OLS with and without an
//! intercept, categoricals, WLS (observation intervals with each row's
//! weight), an HC3 fit's `mean_se` — to 1e-8; rows that cannot be
//! predicted are null and counted; output in input order and the same bits
//! for any thread count; a missing column refused before any output.

use crate::common::{bin, gramfit, rel_diff, streeteasy, tempdir};
use crate::peers;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The listings split: every fifth row held out (every borough is in both).
fn split(dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(streeteasy()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (mut train, mut test) = (format!("{header}\n"), format!("{header}\n"));
    for (i, l) in lines.enumerate() {
        let t = if i % 5 == 0 { &mut test } else { &mut train };
        t.push_str(l);
        t.push('\n');
    }
    let (a, b) = (dir.join("train.csv"), dir.join("test.csv"));
    std::fs::write(&a, train).unwrap();
    std::fs::write(&b, test).unwrap();
    (a, b)
}

/// gramfit's predictions as JSON Lines, one object per row.
fn predict_rows(args: &[&str]) -> Vec<Value> {
    let out = Command::new(bin()).arg("predict").args(args).args(["--format", "json", "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

const COLS: [&str; 6] = ["mean", "mean_se", "mean_ci_lower", "mean_ci_upper", "obs_ci_lower", "obs_ci_upper"];

/// Where gramfit's rows differ from statsmodels' `summary_frame` columns
/// by more than 1e-8.
fn differences(name: &str, ours: &[Value], theirs: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for c in COLS {
        let col = theirs[c].as_array().unwrap();
        for (r, row) in ours.iter().enumerate() {
            let (a, b) = (row[c].as_f64().unwrap_or(f64::NAN), col[r].as_f64().unwrap_or(f64::NAN));
            if rel_diff(a, b) > 1e-8 {
                errs.push(format!("{name}: row {r} {c}: gramfit {a:e} vs statsmodels {b:e}"));
            }
        }
    }
    errs
}

#[test]
fn predictions_equal_statsmodels_get_prediction() {
    let tmp = tempdir();
    let (train, test) = split(tmp.path());
    // (name, formula, weights, covariance, alpha)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, f64);
    let cases: [Case; 5] = [
        ("ols", "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer", None, None, 0.05),
        ("no-intercept", "rent ~ size_sqft + bedrooms - 1", None, None, 0.05),
        ("categorical", "np.log(rent) ~ size_sqft + C(borough) + C(borough):bedrooms", None, None, 0.1),
        ("wls", "rent ~ size_sqft + bedrooms + C(borough)", Some("1/(1+min_to_subway)"), None, 0.05),
        ("hc3", "rent ~ size_sqft + bedrooms + has_doorman + C(borough)", None, Some("HC3"), 0.05),
    ];
    let jobs: Vec<Value> = cases
        .iter()
        .map(|(name, f, w, cov, alpha)| {
            json!({"name": name, "kind": "predict", "data": s(&train), "new": s(&test), "formula": f,
                   "weights": w, "cov_type": cov, "alpha": alpha})
        })
        .collect();
    let theirs = peers::run(&json!(jobs));
    let mut errs = Vec::new();
    for (name, f, w, cov, alpha) in cases {
        let t = &theirs[name];
        assert!(t.get("error").is_none(), "{name}: statsmodels failed: {}", t["error"]);
        let st = tmp.path().join(format!("{name}.gramfit"));
        let mut fit = vec!["fit", s(&train), "-f", f, "--save", s(&st), "-q"];
        if let Some(w) = w {
            fit.extend(["--weights", w]);
        }
        if let Some(c) = cov {
            fit.extend(["--cov-type", c]);
        }
        let out = gramfit(&fit);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let alpha = alpha.to_string();
        let ours = predict_rows(&[s(&st), s(&test), "--alpha", &alpha]);
        assert_eq!(ours.len(), 1000, "{name}: one row per input row");
        errs.extend(differences(name, &ours, t));
        // The residual against the held-out rent (or its log).
        let y = |r: usize| ours[r]["mean"].as_f64().unwrap() + ours[r]["resid"].as_f64().unwrap();
        let sd = |r: usize| ours[r]["resid"].as_f64().unwrap() / ours[r]["resid_std"].as_f64().unwrap();
        for r in [0usize, 1, 500, 999] {
            assert!(y(r).is_finite() && sd(r) > 0.0, "{name}: row {r}");
        }
    }
    assert!(errs.is_empty(), "{} differences:\n{}", errs.len(), errs[..errs.len().min(20)].join("\n"));
}

#[test]
fn unseen_levels_and_missing_predictors_give_counted_nulls_or_errors() {
    let tmp = tempdir();
    let (train, _) = split(tmp.path());
    let st = tmp.path().join("s.gramfit");
    let out = gramfit(["fit", s(&train), "-f", "rent ~ size_sqft + C(borough)", "--save", s(&st), "-q"]);
    assert!(out.status.success());
    let new = tmp.path().join("new.csv");
    std::fs::write(
        &new,
        "rental_id,rent,size_sqft,borough\n1,3000,700,Brooklyn\n2,,800,Staten Island\n3,2500,NA,Queens\n4,4000,900,Manhattan\n5,,650,Queens\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["predict", s(&st), s(&new), "--keep", "rental_id", "--format", "json", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.iter().map(|r| r["rental_id"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(rows[0]["mean"].is_number() && rows[3]["mean"].is_number());
    assert!(rows[1]["mean"].is_null() && rows[2]["mean"].is_null());
    // A row without its response is predicted, with no residual (its
    // residual columns are null where the interval columns are not).
    assert!(rows[0]["resid"].is_number() && rows[0]["resid_std"].is_number());
    assert!(rows[4]["mean"].is_number() && rows[4]["mean_se"].is_number() && rows[4]["obs_ci_upper"].is_number());
    assert!(rows[4]["resid"].is_null() && rows[4]["resid_std"].is_null(), "{}", rows[4]);
    // In a table, null (not NaN in a valid slot, which JSON would print
    // as null too): rows 2 and 3 in every column, row 5 in the residuals.
    let table = tmp.path().join("p.arrow");
    let out = gramfit(["predict", s(&st), s(&new), "-o", s(&table), "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reader = arrow::ipc::reader::FileReader::try_new(std::fs::File::open(&table).unwrap(), None).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    for (name, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let nulls: Vec<usize> = (0..col.len()).filter(|&r| col.is_null(r)).collect();
        let want = if name.name().starts_with("resid") { vec![1, 2, 4] } else { vec![1, 2] };
        assert_eq!(nulls, want, "{}", name.name());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 of 5 rows predicted as null: 1 with a missing predictor; 1 with borough = Staten Island, a level the fit never saw"), "{err}");
    let out = gramfit(["predict", s(&st), s(&new), "--unseen-level", "error", "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Staten Island") && err.contains("never saw"), "{err}");
    let out = gramfit(["predict", s(&st), s(&new), "--missing", "error", "-q"]);
    assert_eq!(out.status.code(), Some(1));
    // A column the model needs, missing from the file: an error, no output.
    let lacking = tmp.path().join("lacking.csv");
    std::fs::write(&lacking, "rent,borough\n1,Queens\n").unwrap();
    let target = tmp.path().join("out.parquet");
    let out = gramfit(["predict", s(&st), s(&lacking), "-o", s(&target), "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("column 'size_sqft' is missing"), "{err}");
    assert!(!target.exists());
}

/// New listings have no rent yet: a file without the response column is
/// predicted (the same means as with it), with no residual columns — for
/// a plain state, an absorbed one and one by blocks.
#[test]
fn a_file_without_the_response_is_predicted() {
    let tmp = tempdir();
    let (train, test) = split(tmp.path());
    // The held-out rows with the rent column cut out.
    let text = std::fs::read_to_string(&test).unwrap();
    let at = text.lines().next().unwrap().split(',').position(|c| c == "rent").unwrap();
    let cut: String = text
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(at);
            f.join(",") + "\n"
        })
        .collect();
    let no_rent = tmp.path().join("no-rent.csv");
    std::fs::write(&no_rent, cut).unwrap();
    for (name, formula, interval, dense_levels) in [
        ("plain", "np.log(rent) ~ size_sqft + bedrooms + C(borough)", "prediction", "300"),
        ("absorbed", "rent ~ size_sqft + bedrooms | borough", "none", "300"),
        ("blocks", "rent ~ size_sqft + bedrooms + C(borough)", "prediction", "2"),
    ] {
        let st = tmp.path().join(format!("{name}.gramfit"));
        let run =
            |args: &[&str]| Command::new(bin()).args(args).env("GRAMFIT_DENSE_LEVELS", dense_levels).output().unwrap();
        let out = run(&["fit", s(&train), "-f", formula, "--save", s(&st), "-q", "--format", "json"]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let notes = String::from_utf8_lossy(&out.stdout).contains("levels (more than 2)");
        assert_eq!(notes, name == "blocks", "{name}: fitted by blocks only where the threshold says");
        let mut rows = Vec::new();
        for file in [&test, &no_rent] {
            let out = run(&["predict", s(&st), s(file), "--interval", interval, "--format", "json", "-q"]);
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            let r: Vec<Value> =
                String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            rows.push(r);
        }
        assert_eq!(rows[1].len(), 1000, "{name}");
        for (with, without) in rows[0].iter().zip(&rows[1]) {
            assert!(with["resid"].is_number() && without.get("resid").is_none(), "{name}: {with} / {without}");
            assert_eq!(with["mean"], without["mean"], "{name}");
            if interval == "prediction" {
                assert_eq!(with["obs_ci_upper"], without["obs_ci_upper"], "{name}");
            }
        }
    }
}

#[test]
fn output_keeps_input_order_and_bits_for_any_thread_count_and_cpu() {
    let tmp = tempdir();
    let data = tmp.path().join("l.parquet");
    gramfit::generate::write_parquet(&data, 5, 0, 60_000, 7_000).unwrap();
    let st = tmp.path().join("s.gramfit");
    let out = gramfit(["fit", s(&data), "-f", "rent ~ size_sqft + bedrooms + C(neighborhood)", "--save", s(&st), "-q"]);
    assert!(out.status.success());
    for ext in ["arrow", "parquet", "csv"] {
        let mut outputs = Vec::new();
        for t in ["1", "2", "3"] {
            let o = tmp.path().join(format!("p{t}.{ext}"));
            let out = gramfit(["predict", s(&st), s(&data), "-o", s(&o), "--threads", t, "--keep", "rent", "-q"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            outputs.push(std::fs::read(&o).unwrap());
        }
        assert!(outputs[0] == outputs[1] && outputs[0] == outputs[2], "{ext}: the same bytes for 1, 2 and 3 threads");
    }
    // And on every instruction-set path this CPU has (the quadratic form's
    // kernel is built for each), intervals and residuals included.
    let mut outputs = Vec::new();
    for level in gramfit::isa::Level::ALL.into_iter().filter(|&l| l <= gramfit::isa::Level::detected()) {
        let o = tmp.path().join(format!("isa-{}.parquet", level.name()));
        let out = Command::new(bin())
            .env("GRAMFIT_ISA", level.name())
            .args(["predict", s(&st), s(&data), "-o", s(&o), "--threads", "2", "-q"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        outputs.push((level, std::fs::read(&o).unwrap()));
    }
    for (level, bytes) in &outputs[1..] {
        assert!(*bytes == outputs[0].1, "{}: the same bytes as {}", level.name(), outputs[0].0.name());
    }
    // In input order: the kept rent column is the file's.
    let reader =
        arrow::ipc::reader::FileReader::try_new(std::fs::File::open(tmp.path().join("p2.arrow")).unwrap(), None)
            .unwrap();
    let kept: Vec<f64> = reader
        .flat_map(|b| {
            let b = b.unwrap();
            let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Float64).unwrap();
            c.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().values().to_vec()
        })
        .collect();
    let file =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&data).unwrap())
            .unwrap()
            .build()
            .unwrap();
    let rents: Vec<f64> = file
        .flat_map(|b| {
            let b = b.unwrap();
            let c =
                arrow::compute::cast(b.column_by_name("rent").unwrap(), &arrow::datatypes::DataType::Float64).unwrap();
            c.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().values().to_vec()
        })
        .collect();
    assert_eq!(kept, rents);
}

/// The listings' rows of one borough, as a CSV file.
fn borough_rows(dir: &Path, source: &Path, borough: &str) -> PathBuf {
    let text = std::fs::read_to_string(source).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let col = header.split(',').position(|h| h == "borough").unwrap();
    let mut out = format!("{header}\n");
    for l in lines.filter(|l| l.split(',').nth(col) == Some(borough)) {
        out.push_str(l);
        out.push('\n');
    }
    let p = dir.join(format!("{borough}.csv"));
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn fit_by_a_column_equals_fits_of_each_group_and_its_states_predict_their_rows() {
    let tmp = tempdir();
    let (train, test) = split(tmp.path());
    let f = "rent ~ size_sqft + bedrooms + has_doorman";
    let states = tmp.path().join("states");
    let out = Command::new(bin())
        .args(["fit", s(&train), "-f", f, "--by", "borough", "--cov-type", "HC1", "--format", "json", "-q"])
        .args(["--save", &format!("{}/", s(&states))])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let grouped: Value = serde_json::from_slice(&out.stdout).unwrap();
    let levels: Vec<&String> = grouped.as_object().unwrap().keys().collect();
    assert_eq!(levels, ["Brooklyn", "Manhattan", "Queens"]);
    for b in ["Brooklyn", "Manhattan", "Queens"] {
        let rows = borough_rows(tmp.path(), &train, b);
        let out = gramfit(["fit", s(&rows), "-f", f, "--cov-type", "HC1", "--format", "json", "-q"]);
        let alone: Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = crate::common::json_differences(&alone, &grouped[b], 1e-12, &["fitted_at", "elapsed_s", "inputs"]);
        assert!(d.is_empty(), "{b}: {d:?}");
        assert!(states.join(format!("{b}.gramfit")).exists());
    }
    // The states predict each row with its own borough's model.
    let together = predict_rows(&[s(&states), s(&test), "--keep", "borough"]);
    assert_eq!(together.len(), 1000);
    for b in ["Brooklyn", "Queens"] {
        let rows = borough_rows(tmp.path(), &test, b);
        let own = predict_rows(&[s(&states.join(format!("{b}.gramfit"))), s(&rows)]);
        let mine: Vec<&Value> = together.iter().filter(|r| r["borough"] == b).collect();
        assert_eq!(mine.len(), own.len());
        for (x, y) in mine.iter().zip(&own) {
            for c in COLS {
                assert_eq!(x[c], y[c], "{b}: {c}");
            }
        }
    }
    // A borough with no model, and a row without a borough: counted nulls,
    // or refused with --unseen-level error / --missing error.
    let odd = tmp.path().join("odd.csv");
    std::fs::write(
        &odd,
        "rent,size_sqft,bedrooms,has_doorman,borough\n3000,700,1,0,Brooklyn\n2000,600,1,0,Staten Island\n2500,650,1,1,\n",
    )
    .unwrap();
    let out = gramfit(["predict", s(&states), s(&odd), "--format", "json", "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("2 of 3 rows predicted as null: 1 with borough = Staten Island (no model)")
            && err.contains("1 with borough missing (no model)"),
        "{err}"
    );
    let out = gramfit(["predict", s(&states), s(&odd), "--unseen-level", "error", "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("level Staten Island at") && err.contains("which no state of the grouped fit has"), "{err}");
    let out = gramfit(["predict", s(&states), s(&odd), "--missing", "error", "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("borough") && err.contains("line 4"), "{err}");
}

#[test]
fn the_nightly_job_keeps_its_models_current_and_scores_the_newest_listings() {
    // configs/nightly.toml as shipped, over the repository's datasets.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempdir();
    let work = tmp.path();
    std::fs::create_dir_all(work.join("configs")).unwrap();
    std::fs::create_dir_all(work.join("datasets/daily")).unwrap();
    std::fs::copy(repo.join("configs/nightly.toml"), work.join("configs/nightly.toml")).unwrap();
    for f in ["listings.csv", "daily/listings-day1.csv"] {
        std::fs::copy(repo.join("datasets").join(f), work.join("datasets").join(f)).unwrap();
    }
    let run = || {
        let out = gramfit(["run", s(&work.join("configs/nightly.toml")), "-q"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // Day two's file is not there yet: the predict table names it.
    std::fs::copy(repo.join("datasets/daily/listings-day2.csv"), work.join("datasets/daily/listings-day2.csv"))
        .unwrap();
    run();
    let state = |p: &str| gramfit::state::load(&work.join("out").join(p)).unwrap();
    assert_eq!(state("nightly-rent.gramfit").inputs.len(), 3);
    let scores = std::fs::read_to_string(work.join("out/nightly-scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 1001);
    assert!(scores.starts_with("rental_id,neighborhood,mean,mean_se,"));
    // The next night: nothing new, nothing changed, the same scores.
    let before = std::fs::read(work.join("out/nightly-rent.gramfit")).unwrap();
    let err = run();
    assert!(err.contains("every input is already in it"), "{err}");
    assert_eq!(std::fs::read(work.join("out/nightly-rent.gramfit")).unwrap(), before);
    // A new day's file: folded into both models.
    let day3 = work.join("datasets/daily/listings-day3.csv");
    gramfit::generate::write_csv(&day3, 77, 20_000, 500).unwrap();
    run();
    assert_eq!(state("nightly-rent.gramfit").inputs.len(), 4);
    assert_eq!(state("nightly-log-rent.gramfit").inputs.len(), 4);
    // The absorbed model too, its level sums with it.
    let within = state("nightly-within.gramfit");
    assert_eq!(within.inputs.len(), 4);
    let levels = within.absorbed.as_ref().expect("level sums").sums[0].len();
    assert!(levels > 100, "{levels} neighborhoods");
    let report = std::fs::read_to_string(work.join("out/nightly-within.txt")).unwrap();
    assert!(report.contains("Fixed effects:   neighborhood ("), "{report}");
}

/// A fit by blocks (the listings' neighborhoods past a threshold forced
/// down to 20 levels) predicts with statsmodels' intervals — those of the
/// dense dummy model, from the level weights and the within moments —
/// to 1e-8, OLS and WLS; `resid_std` uses them; a neighborhood the fit
/// never saw is a counted null, or refused with `--unseen-level error`.
#[test]
fn a_fit_by_blocks_predicts_with_the_dense_models_intervals() {
    let tmp = tempdir();
    let (train, test) = split(tmp.path());
    // statsmodels cannot code a level it did not fit: keep the held-out
    // rows whose neighborhood the training rows have.
    let column = |text: &str| text.lines().next().unwrap().split(',').position(|c| c == "neighborhood").unwrap();
    let train_text = std::fs::read_to_string(&train).unwrap();
    let at = column(&train_text);
    let seen: std::collections::HashSet<&str> =
        train_text.lines().skip(1).map(|l| l.split(',').nth(at).unwrap()).collect();
    let test_text = std::fs::read_to_string(&test).unwrap();
    let (mut known, mut dropped) = (String::new(), 0);
    for (i, l) in test_text.lines().enumerate() {
        if i == 0 || seen.contains(l.split(',').nth(at).unwrap()) {
            known.push_str(l);
            known.push('\n');
        } else {
            dropped += 1;
        }
    }
    assert!(dropped > 0, "some held-out neighborhoods are new");
    let held = tmp.path().join("held.csv");
    std::fs::write(&held, &known).unwrap();
    let formula = "rent ~ size_sqft + bedrooms + min_to_subway + C(neighborhood)";
    let cases: [(&str, Option<&str>, f64); 2] =
        [("blocks-ols", None, 0.05), ("blocks-wls", Some("1/(1+min_to_subway)"), 0.1)];
    let jobs: Vec<Value> = cases
        .iter()
        .map(|(name, w, alpha)| {
            json!({"name": name, "kind": "predict", "data": s(&train), "new": s(&held), "formula": formula,
                   "weights": w, "cov_type": null, "alpha": alpha})
        })
        .collect();
    let theirs = peers::run(&json!(jobs));
    let forced = |args: &[&str]| Command::new(bin()).args(args).env("GRAMFIT_DENSE_LEVELS", "20").output().unwrap();
    let mut errs = Vec::new();
    for (name, w, alpha) in cases {
        let t = &theirs[name];
        assert!(t.get("error").is_none(), "{name}: statsmodels failed: {}", t["error"]);
        let st = tmp.path().join(format!("{name}.gramfit"));
        let mut fit = vec!["fit", s(&train), "-f", formula, "--save", s(&st), "--format", "json", "-q"];
        if let Some(w) = w {
            fit.extend(["--weights", w]);
        }
        let out = forced(&fit);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let notes = report["gramfit_notes"].to_string();
        assert!(notes.contains("levels (more than 20"), "{name}: fitted by blocks: {notes}");
        let alpha = alpha.to_string();
        let out = forced(&["predict", s(&st), s(&held), "--alpha", &alpha, "--format", "json", "-q"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ours: Vec<Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(ours.len(), known.lines().count() - 1, "{name}: one row per input row");
        errs.extend(differences(name, &ours, t));
        // resid_std = resid / √(scale/w + mean_se²), the observation
        // interval's half-width over q.
        for row in &ours {
            let resid = row["resid"].as_f64().unwrap();
            let half = row["obs_ci_upper"].as_f64().unwrap() - row["mean"].as_f64().unwrap();
            let q = half * row["resid_std"].as_f64().unwrap() / resid;
            let q0 = (ours[0]["obs_ci_upper"].as_f64().unwrap() - ours[0]["mean"].as_f64().unwrap())
                * ours[0]["resid_std"].as_f64().unwrap()
                / ours[0]["resid"].as_f64().unwrap();
            assert!(rel_diff(q, q0) < 1e-9, "{name}: the same quantile on every row: {q} vs {q0}");
        }
    }
    assert!(errs.is_empty(), "{} differences:\n{}", errs.len(), errs[..errs.len().min(20)].join("\n"));
    // The held-out rows with new neighborhoods: null and counted, or refused.
    let st = tmp.path().join("blocks-ols.gramfit");
    let out = forced(&["predict", s(&st), s(&test), "-o", s(&tmp.path().join("all.csv")), "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("{dropped} of 1000 rows predicted as null")), "{err}");
    assert!(err.contains("a level the fit never saw"), "{err}");
    let out = forced(&["predict", s(&st), s(&test), "--unseen-level", "error", "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("neighborhood (level ") && err.contains("which the fit never saw"), "{err}");
}

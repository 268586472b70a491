//! CSV read in parallel blocks: the same bits for every thread count,
//! the second pass from the columns the first kept (plain and gzip text,
//! a cluster column only the second pass reads) equal to parsing the text
//! again, no temporary file left behind, and errors that name the exact
//! physical line of a record deep in a file with quoted newlines.

use crate::common::{bin, gramfit, tempdir};
use gramfit::generate;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const F: &str =
    "rent ~ size_sqft + bedrooms + bathrooms + min_to_subway + floor + has_doorman + C(borough) + np.log(size_sqft)";

/// The JSON report of a fit without its timing, with `env` set and the
/// temporary directory `tmp` (which must be left empty).
fn fit(args: &[&str], env: &[(&str, &str)], tmp: &Path) -> Value {
    let out = Command::new(bin())
        .args(["fit", "--format", "json"])
        .args(args)
        .envs(env.iter().copied())
        .env("TMPDIR", tmp)
        .output()
        .expect("run gramfit");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(left.is_empty(), "{args:?} left {left:?} in the temporary directory");
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in ["elapsed_s", "fitted_at", "inputs"] {
        o.remove(k);
    }
    v
}

#[test]
fn blocks_give_the_same_bits_for_every_thread_count_and_kept_columns_equal_the_text() {
    let dir = tempdir();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let csv = dir.path().join("l.csv");
    // 100,000 rows: four blocks of 32,768 records, the last one short.
    generate::write_csv(&csv, 11, 0, 100_000).unwrap();
    let gz = dir.path().join("l.csv.gz");
    let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut std::fs::File::open(&csv).unwrap(), &mut e).unwrap();
    e.finish().unwrap();
    for extra in [&["--cov-type", "HC3"][..], &["--cov-type", "cluster", "--cluster", "neighborhood"][..]] {
        let mut first: Option<Value> = None;
        for input in [&csv, &gz] {
            for threads in ["1", "2", "3"] {
                for no_spill in ["0", "1"] {
                    let mut args = vec![input.to_str().unwrap(), "-f", F, "--threads", threads];
                    args.extend_from_slice(extra);
                    let v = fit(&args, &[("GRAMFIT_NO_SPILL", no_spill)], &tmp);
                    assert!(v["bse"].as_object().unwrap().len() > 5);
                    match &first {
                        None => first = Some(v),
                        // serde_json prints shortest round-trip digits:
                        // equal JSON means equal bits.
                        Some(f) => assert_eq!(
                            &v,
                            f,
                            "{extra:?} {}: threads {threads}, GRAMFIT_NO_SPILL={no_spill}",
                            input.display()
                        ),
                    }
                }
            }
        }
    }
}

#[test]
fn an_error_deep_in_a_block_names_its_physical_line() {
    let dir = tempdir();
    // Past the rows read to infer types (1,000,000), in a block with
    // quotes (parsed by csv-core) and in one without (split by masks).
    let bad = 1_050_000;
    for quotes_to in [500_000, 2_000_000] {
        let csv = dir.path().join(format!("q{quotes_to}.csv"));
        let mut text = String::with_capacity(30 << 20);
        text.push_str("rent,size_sqft,note\n");
        for i in 0..1_100_000 {
            let note = if i % 1000 == 7 && i < quotes_to { "\"two\nlines, one cell\"" } else { "plain" };
            let size = if i == bad { "abc".to_string() } else { format!("{}.5", 500 + i % 300) };
            text.push_str(&format!("{},{size},{note}\n", 1000 + i % 977));
        }
        std::fs::write(&csv, &text).unwrap();
        // The line: the header, the records before, and the extra line of
        // each quoted note before it.
        let line = 1 + bad + 1 + (0..bad).filter(|i| i % 1000 == 7 && *i < quotes_to).count();
        for threads in ["1", "2"] {
            let out = gramfit(["fit", csv.to_str().unwrap(), "-f", "rent ~ size_sqft", "--threads", threads]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            let want = format!("line {line}: column 'size_sqft': 'abc' is not a number");
            assert!(err.contains(&want) && err.contains(csv.to_str().unwrap()), "expected {want}: {err}");
        }
    }
}

/// The second pass reads the kept columns, not the text: with the file
/// overwritten between the passes it still gives the diagnostics of the
/// file the first pass read (parsing the text again would fail).
#[test]
fn the_second_pass_reads_the_kept_columns_not_the_text() {
    use gramfit::engine::{EngineOptions, Progress, Spill};
    use gramfit::model::{self, ModelOptions, ReportOptions, RobustOptions};
    use gramfit::second_pass::CovType;
    use gramfit::source::csv::ReadFrom;
    use std::sync::Arc;
    let dir = tempdir();
    let csv = dir.path().join("l.csv");
    generate::write_csv(&csv, 5, 0, 50_000).unwrap();
    let args = [csv.to_str().unwrap().to_string()];
    let run = |spill: Option<Arc<Spill>>, overwrite: bool| {
        let eo = EngineOptions { threads: 2, spill, ..EngineOptions::default() };
        let progress = Progress::default();
        let opened = model::open_inputs(&args, &Default::default()).unwrap();
        let (inputs, schemas) = (opened.inputs.clone(), opened.schemas.clone());
        let (resolved, pass) = model::resolve_and_accumulate(ModelOptions::new(F), opened, &eo, &progress).unwrap();
        let text = std::fs::read(&csv).unwrap();
        if overwrite {
            std::fs::write(&csv, b"something,else\n1,2\n").unwrap();
        }
        let mut again = model::OpenedInputs { inputs, csv: Default::default(), schemas, stdin: None };
        again.inputs[0].from = ReadFrom { limit: Some(pass.inputs[0].end.unwrap().records), ..ReadFrom::default() };
        let robust = RobustOptions { cov: CovType::Hc1, cluster: None };
        let snap = model::second_pass(&resolved, &pass.acc, &ReportOptions::default(), robust, again, &eo, &progress);
        std::fs::write(&csv, text).unwrap();
        snap.map(|s| serde_json::to_value(&s).unwrap()).map_err(|e| e.to_string())
    };
    let parsed_twice = run(None, false).unwrap();
    let kept = run(Some(Arc::new(Spill::new(Vec::new()).unwrap())), true).expect("the kept columns are read");
    assert_eq!(kept, parsed_twice);
    assert!(run(None, true).is_err(), "without kept columns the overwritten text is read");
}

/// Without a usable temporary directory the fit says so and parses the
/// text again: the same numbers.
#[test]
fn without_a_temporary_directory_the_text_is_parsed_again_with_a_note() {
    let dir = tempdir();
    let csv = dir.path().join("l.csv");
    generate::write_csv(&csv, 3, 0, 40_000).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let args = [csv.to_str().unwrap(), "-f", F, "--cov-type", "HC1"];
    let kept = fit(&args, &[], &tmp);
    let missing = dir.path().join("no-such-dir");
    let out =
        Command::new(bin()).args(["fit", "--format", "json"]).args(args).env("TMPDIR", &missing).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("no temporary directory for the parsed CSV columns") && err.contains("parses the text again"),
        "{err}"
    );
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["elapsed_s", "fitted_at", "inputs"] {
        v.as_object_mut().unwrap().remove(k);
    }
    assert_eq!(v, kept);
}

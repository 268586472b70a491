//! Incremental fits: update, merge and retract agree with one fit; repeated
//! and foreign inputs are refused; damaged states are refused; a SIGKILL at
//! any moment leaves the old or the new state, complete.

use crate::common::{gramfit, gramfit_json, rel_diff, shared_datasets, tempdir};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn borough_files() -> [PathBuf; 3] {
    let d = shared_datasets().join("streeteasy");
    [d.join("manhattan.csv"), d.join("brooklyn.csv"), d.join("queens.csv")]
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_of(args: &[&str]) -> Value {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--format", "json"]);
    gramfit_json(a)
}

fn assert_same_fit(what: &str, a: &Value, b: &Value, tol: f64) {
    let names: Vec<&String> = a["params"].as_object().unwrap().keys().collect();
    let bnames: Vec<&String> = b["params"].as_object().unwrap().keys().collect();
    assert_eq!(names, bnames, "{what}: columns");
    for n in names {
        for key in ["params", "bse"] {
            let (x, y) = (a[key][n].as_f64(), b[key][n].as_f64());
            match (x, y) {
                (Some(x), Some(y)) => assert!(rel_diff(x, y) <= tol, "{what}: {key}[{n}] {x:e} vs {y:e}"),
                (None, None) => {}
                _ => panic!("{what}: {key}[{n}] {x:?} vs {y:?}"),
            }
        }
    }
    for key in ["nobs", "ssr", "rsquared", "llf", "df_resid"] {
        assert!(rel_diff(a[key].as_f64().unwrap(), b[key].as_f64().unwrap()) <= tol, "{what}: {key}");
    }
}

#[test]
fn update_and_merge_equal_one_fit_and_retract_undoes() {
    let [a, b, c] = borough_files();
    let tmp = tempdir();
    for formula in [
        "rent ~ size_sqft + bedrooms + min_to_subway + has_doorman",
        // Queens appears only in the last file.
        "rent ~ size_sqft + bedrooms + C(borough) + C(borough):size_sqft",
    ] {
        let whole = json_of(&["fit", s(&a), s(&b), s(&c), "-f", formula]);
        // fit(A) → update(B) → update(C)
        let st = tmp.path().join("inc.gramfit");
        let _ = std::fs::remove_file(&st);
        json_of(&["fit", s(&a), "-f", formula, "--save", s(&st)]);
        json_of(&["update", s(&st), s(&b)]);
        let updated = json_of(&["update", s(&st), s(&c)]);
        assert_same_fit("fit → update → update", &whole, &updated, 1e-9);
        // merge(fit A, fit B, fit C)
        let parts: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("part{i}.gramfit"))).collect();
        for (f, p) in [&a, &b, &c].iter().zip(&parts) {
            json_of(&["fit", s(f), "-f", formula, "--save", s(p)]);
        }
        let merged_path = tmp.path().join("merged.gramfit");
        let merged = json_of(&["merge", s(&parts[0]), s(&parts[1]), s(&parts[2]), "-o", s(&merged_path)]);
        assert_same_fit("merge", &whole, &merged, 1e-9);
        // retract(fit(A, B, C), C) = fit(A, B)
        let ab = json_of(&["fit", s(&a), s(&b), "-f", formula]);
        let retracted = json_of(&["retract", s(&st), s(&c)]);
        assert_same_fit("retract", &ab, &retracted, 1e-8);
        // The summary of the state is the report of the same numbers.
        let summary = json_of(&["summary", s(&st)]);
        assert_same_fit("summary", &retracted, &summary, 0.0);
    }
}

#[test]
fn repeated_foreign_and_mismatched_inputs_are_refused() {
    let [a, b, c] = borough_files();
    let tmp = tempdir();
    let st = tmp.path().join("s.gramfit");
    let f = "rent ~ size_sqft + bedrooms";
    json_of(&["fit", s(&a), "-f", f, "--save", s(&st)]);
    let before = std::fs::read(&st).unwrap();
    let out = gramfit(["update", s(&st), s(&a)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already folded into"), "{err}");
    assert_eq!(std::fs::read(&st).unwrap(), before, "a refused update leaves the state untouched");
    // --force adds it anyway.
    let forced = json_of(&["update", s(&st), s(&a), "--force"]);
    assert_eq!(forced["nobs"].as_u64().unwrap(), 2 * 3539);
    // Retracting a file never added.
    let out = gramfit(["retract", s(&st), s(&b)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never folded into"));
    // Merging states of different models.
    let other = tmp.path().join("o.gramfit");
    json_of(&["fit", s(&c), "-f", "rent ~ size_sqft", "--save", s(&other)]);
    let out = gramfit(["merge", s(&st), s(&other), "-o", s(&tmp.path().join("m.gramfit"))]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not states of the same model") && err.contains("formula"), "{err}");
    assert!(!tmp.path().join("m.gramfit").exists(), "nothing written");
}

#[test]
fn damaged_states_are_refused_cleanly() {
    let [a, ..] = borough_files();
    let tmp = tempdir();
    let st = tmp.path().join("s.gramfit");
    json_of(&["fit", s(&a), "-f", "rent ~ size_sqft + C(neighborhood)", "--save", s(&st)]);
    let good = std::fs::read(&st).unwrap();
    let bad = tmp.path().join("bad.gramfit");
    let n = good.len();
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for pos in [0, 3, 8, 12, 19, 20, 21, n / 3, n / 2, n - 5, n - 1] {
        for bit in [0x01u8, 0x80] {
            let mut b = good.clone();
            b[pos] ^= bit;
            cases.push(b);
        }
    }
    for len in [0, 1, 8, 19, 24, n / 2, n - 4, n - 1] {
        cases.push(good[..len].to_vec());
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"junk");
    cases.push(longer);
    for (i, c) in cases.iter().enumerate() {
        std::fs::write(&bad, c).unwrap();
        let out = gramfit(["summary", s(&bad)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "case {i}: exit code; stderr {err}");
        assert!(!err.contains("panicked"), "case {i}: panic: {err}");
        assert!(
            err.contains("bad.gramfit")
                && (err.contains("damaged")
                    || err.contains("not a gramfit state")
                    || err.contains("empty")
                    || err.contains("newer")),
            "case {i}: {err}"
        );
    }
}

#[test]
fn sigkill_during_update_leaves_old_or_new_state() {
    let tmp = tempdir();
    let base_data = tmp.path().join("base.csv");
    let new_data = tmp.path().join("new.csv");
    gramfit::generate::write_csv(&base_data, 7, 0, 2000).unwrap();
    gramfit::generate::write_csv(&new_data, 7, 2000, 300_000).unwrap();
    let base = tmp.path().join("base.gramfit");
    let f = "rent ~ size_sqft + bedrooms + C(neighborhood)";
    json_of(&["fit", s(&base_data), "-f", f, "--save", s(&base)]);
    let old = std::fs::read(&base).unwrap();
    let st = tmp.path().join("work.gramfit");
    let mut saw_old = 0;
    let mut saw_new = 0;
    // Time one complete update, then kill at random moments across it.
    std::fs::write(&st, &old).unwrap();
    let t0 = std::time::Instant::now();
    json_of(&["update", s(&st), s(&new_data), "--quiet"]);
    let full_ms = t0.elapsed().as_millis() as u64;
    let mut seed = 12345u64;
    for _ in 0..24 {
        std::fs::write(&st, &old).unwrap();
        let mut child = std::process::Command::new(crate::common::bin())
            .args(["update", s(&st), s(&new_data), "--quiet", "--format", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let ms = (seed >> 33) % (full_ms * 6 / 5 + 1);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let bytes = std::fs::read(&st).expect("state still there");
        let state = gramfit::state::decode(&bytes, &st).expect("state complete and valid");
        if bytes == old {
            saw_old += 1;
        } else {
            assert_eq!(state.accumulator.rows_read, 302_000, "the new state is complete");
            saw_new += 1;
        }
        // No temporary files are left behind that could be mistaken for states.
        let leftovers = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".gramfit"))
            .count();
        assert_eq!(leftovers, 2, "only base and work states");
    }
    assert!(saw_old + saw_new == 24);
    println!("SIGKILL over a {full_ms} ms update: {saw_old} runs left the old state, {saw_new} the new one");
}

#[test]
fn follow_folds_in_new_files_and_stops_cleanly_on_ctrl_c() {
    let [a, b, c] = borough_files();
    let tmp = tempdir();
    let dir = tmp.path().join("incoming");
    std::fs::create_dir(&dir).unwrap();
    let st = tmp.path().join("follow.gramfit");
    let report = tmp.path().join("report.json");
    let f = "rent ~ size_sqft + bedrooms + C(borough)";
    let child = std::process::Command::new(crate::common::bin())
        .args(["fit", s(&a), "-f", f, "--save", s(&st), "--follow", s(&dir), "--poll-ms", "50", "--settle-ms", "200"])
        // The borough files end without a line end: their last line is
        // read once the file has stayed unchanged this long.
        .args(["--tail-ms", "300"])
        .args(["--format", "json", "-o", s(&report), "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rows_in_state = |n: u64| {
        for _ in 0..200 {
            if let Ok(bytes) = std::fs::read(&st) {
                if let Ok(state) = gramfit::state::decode(&bytes, &st) {
                    if state.accumulator.rows_read == n {
                        return true;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    };
    assert!(rows_in_state(3539), "initial fit saved");
    // Files are written under a temporary name and renamed into place; a
    // half-written file under its final name would be read only once settled.
    for (i, src) in [&b, &c].iter().enumerate() {
        let tmpname = dir.join(format!(".part{i}.csv"));
        std::fs::copy(src, &tmpname).unwrap();
        std::fs::rename(&tmpname, dir.join(format!("day{i}.csv"))).unwrap();
    }
    assert!(rows_in_state(5000), "both new files folded in");
    // Ctrl-C: a clean stop.
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("stopped following"), "{err}");
    let whole = json_of(&["fit", s(&a), s(&b), s(&c), "-f", f]);
    let followed: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_same_fit("follow", &whole, &followed, 1e-9);
}

#[test]
fn diagnose_runs_the_second_pass_over_recorded_inputs() {
    let [a, b, _] = borough_files();
    let tmp = tempdir();
    let st = tmp.path().join("d.gramfit");
    let f = "rent ~ size_sqft + bedrooms + has_doorman";
    json_of(&["fit", s(&a), "-f", f, "--save", s(&st)]);
    let updated = json_of(&["update", s(&st), s(&b)]);
    assert!(updated["durbin_watson"].is_null(), "an update drops the old second pass");
    let diagnosed = json_of(&["diagnose", s(&st), "--cov-type", "HC1"]);
    let direct = json_of(&["fit", s(&a), s(&b), "-f", f, "--cov-type", "HC1"]);
    for k in ["durbin_watson", "omnibus", "jarque_bera", "skew", "kurtosis", "fvalue"] {
        assert!(rel_diff(diagnosed[k].as_f64().unwrap(), direct[k].as_f64().unwrap()) < 1e-9, "{k}");
    }
    assert_same_fit("diagnose", &direct, &diagnosed, 1e-9);
    // And summary now shows the stored second pass.
    let summary = json_of(&["summary", s(&st)]);
    assert_eq!(summary["durbin_watson"], diagnosed["durbin_watson"]);
    assert_eq!(summary["cov_type"], "HC1");
}

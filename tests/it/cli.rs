//! The command line: golden summary, summary of a saved state, formats,
//! exit codes, broken pipes, the heatmap, batch jobs and the README.

use crate::common::{bin, gramfit, gramfit_json, tempdir};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn listings() -> String {
    repo().join("datasets/listings.csv").to_str().unwrap().to_string()
}

const F: &str = "rent ~ size_sqft + bedrooms + bathrooms + min_to_subway + has_washer_dryer + C(borough)";

/// Blank out what changes between runs: date, time, wall time, paths.
fn mask(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("Date:") || l.starts_with("Time:") {
                let (_, right) = l.split_at(37.min(l.len()));
                format!("{:<37}{right}", &l[..5])
            } else if l.starts_with("Pass over the data:") {
                "Pass over the data: <masked>".to_string()
            } else if l.starts_with("Input:") {
                "Input: <masked>".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn stdout_of(args: &[&str]) -> String {
    let out = gramfit(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Compare with a golden file; `GRAMFIT_UPDATE_SNAPSHOTS=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = repo().join("tests/snapshots").join(name);
    if std::env::var_os("GRAMFIT_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing snapshot {}", path.display()));
    assert_eq!(actual, expected, "snapshot {name} differs (GRAMFIT_UPDATE_SNAPSHOTS=1 to accept)");
}

#[test]
fn text_summary_matches_the_golden_file() {
    golden("fit_listings.txt", &mask(&stdout_of(&["fit", &listings(), "-f", F])));
    golden(
        "fit_singular.txt",
        &mask(&stdout_of(&["fit", &listings(), "-f", "rent ~ size_sqft + min_to_subway + I(60 * min_to_subway) - 1"])),
    );
    golden(
        "fit_listings.md",
        &stdout_of(&["fit", &listings(), "-f", F, "--format", "markdown"]).replace(&listings(), "<input>"),
    );
    golden("fit_listings.csv", &stdout_of(&["fit", &listings(), "-f", F, "--format", "csv"]));
}

#[test]
fn summary_of_a_saved_state_is_the_fit_report() {
    let tmp = tempdir();
    let st = tmp.path().join("s.gramfit");
    for format in ["text", "json", "markdown", "csv"] {
        let fit = stdout_of(&["fit", &listings(), "-f", F, "--save", st.to_str().unwrap(), "--format", format]);
        let summary = stdout_of(&["summary", st.to_str().unwrap(), "--format", format]);
        assert!(fit == summary, "{format}: summary of the saved state differs from the fit report");
    }
}

#[test]
fn json_has_statsmodels_names_in_a_stable_order() {
    let v = gramfit_json(["fit", &listings(), "-f", F, "--format", "json"]);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let expected = [
        "model",
        "dep_variable",
        "formula",
        "nobs",
        "df_model",
        "df_resid",
        "rank",
        "k_constant",
        "params",
        "bse",
        "tvalues",
        "pvalues",
        "conf_int",
        "alpha",
        "ssr",
        "ess",
        "centered_tss",
        "uncentered_tss",
        "scale",
        "mse_model",
        "mse_resid",
        "mse_total",
        "rsquared",
        "rsquared_adj",
        "fvalue",
        "f_pvalue",
        "llf",
        "aic",
        "bic",
        "cov_type",
        "use_t",
        "omnibus",
        "prob_omnibus",
        "skew",
        "kurtosis",
        "jarque_bera",
        "prob_jb",
        "durbin_watson",
        "cov_params",
        "eigenvals",
        "condition_number",
        "singular_policy",
        "aliased",
        "dependencies",
        "diagnostics",
        "notes",
        "gramfit_notes",
        "rows",
        "inputs",
        "fitted_at",
        "elapsed_s",
    ];
    assert_eq!(keys, expected);
    let names: Vec<&String> = v["params"].as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        [
            "Intercept",
            "C(borough)[T.Manhattan]",
            "C(borough)[T.Queens]",
            "size_sqft",
            "bedrooms",
            "bathrooms",
            "min_to_subway",
            "has_washer_dryer"
        ]
    );
    assert!(v["notes"].as_array().unwrap()[0].as_str().unwrap().starts_with("Standard Errors assume"));
}

#[test]
fn exit_codes_and_usage_errors() {
    let out = gramfit(["fit", &listings(), "-f", F, "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = gramfit(["fit", &listings()]);
    assert_eq!(out.status.code(), Some(2), "missing --formula");
    let out = gramfit(["fit", &listings(), "-f", F, "--alpha", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--alpha must be between 0 and 1"));
    let out = gramfit(["fit", &listings(), "-f", F, "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = gramfit(["fit", &listings(), "-f", F, "--cov-type", "cluster"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cov-type cluster needs --cluster COL"));
    let out = gramfit(["fit", &listings(), "-f", F, "--cov-type", "HC3", "--cluster", "borough"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--cluster borough is used only with --cov-type cluster (the covariance here is HC3)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gramfit(["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["fit", "run", "summary", "update", "merge", "retract", "corr", "design"] {
        assert!(help.contains(cmd), "help lists {cmd}");
    }
}

#[test]
fn a_broken_pipe_exits_quietly() {
    let mut child = Command::new(bin())
        .args(["design", &listings(), "-f", F, "--head", "0", "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn corr_heatmap_is_valid_svg_with_a_cell_per_pair() {
    let tmp = tempdir();
    let svg = tmp.path().join("corr.svg");
    let cols = "rent,size_sqft,bedrooms,bathrooms,min_to_subway";
    let v = gramfit_json(["corr", &listings(), "--columns", cols, "--svg", svg.to_str().unwrap(), "--format", "json"]);
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let cells: Vec<_> = doc.descendants().filter(|n| n.attribute("class") == Some("cell")).collect();
    assert_eq!(cells.len(), 25, "a cell per pair");
    let names: Vec<&str> = cols.split(',').collect();
    for c in &cells {
        let (r, k) = (c.attribute("data-row").unwrap(), c.attribute("data-col").unwrap());
        let (i, j) = (names.iter().position(|n| *n == r).unwrap(), names.iter().position(|n| *n == k).unwrap());
        let label = c.descendants().find(|n| n.has_tag_name("text")).unwrap().text().unwrap();
        let r_json = v["matrix"][i][j].as_f64().unwrap();
        assert_eq!(label, format!("{r_json:.2}"), "cell {r},{k}");
    }
    // Flagged pairs: size and bedrooms are collinear in the sample.
    let flagged = v["flagged"].as_array().unwrap();
    assert!(flagged.iter().any(|f| f["a"] == "size_sqft" && f["b"] == "bedrooms"));
    // The text table flags them too, and the correlations equal a
    // Pearson correlation computed directly.
    let t = stdout_of(&["corr", &listings(), "--columns", "size_sqft,bedrooms"]);
    assert!(t.contains("size_sqft ~ bedrooms: r = 0.9597"), "{t}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn batch_jobs_run_and_bad_configs_write_nothing() {
    let out = gramfit(["run", repo().join("configs/sample.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OLS Regression Results"));

    let tmp = tempdir();
    let d = tmp.path();
    let data = listings();
    let ok = write(
        d,
        "ok.toml",
        &format!(
            "inputs = [{data:?}]\n[[models]]\nname = \"a\"\nformula = \"rent ~ size_sqft\"\nreport = \"out/a.txt\"\nstate = \"out/a.gramfit\"\n\
             [[models]]\nname = \"b\"\nformula = \"rent ~ bedrooms + C(borough)\"\nformat = \"json\"\nreport = \"out/b.json\"\n"
        ),
    );
    let out = gramfit(["run", ok.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(d.join("out/a.txt").exists() && d.join("out/a.gramfit").exists());
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("out/b.json")).unwrap()).unwrap();
    assert_eq!(b["formula"], "rent ~ bedrooms + C(borough)");
    // A command-line flag overrides the config.
    let out = gramfit(["run", ok.to_str().unwrap(), "--format", "csv"]);
    assert!(out.status.success());
    assert!(std::fs::read_to_string(d.join("out/a.txt")).unwrap().starts_with("term,coef"));

    let cases = [
        ("unknown.toml", format!("inputs = [{data:?}]\nformula = \"rent ~ size_sqft\"\nformla = \"x\"\nreport = \"r1.txt\"\n"), 2, "unknown field `formla`"),
        ("noformula.toml", format!("inputs = [{data:?}]\nreport = \"r2.txt\"\nstate = \"s2.gramfit\"\n"), 2, "has no `formula`"),
        ("unreadable.toml", "inputs = [\"missing.csv\"]\nformula = \"rent ~ size_sqft\"\nreport = \"r3.txt\"\n".to_string(), 1, "missing.csv"),
        ("badcol.toml", format!("inputs = [{data:?}]\nformula = \"rent ~ size_sqtf\"\nreport = \"r4.txt\"\n"), 1, "did you mean 'size_sqft'"),
        (
            "second_bad.toml",
            format!("inputs = [{data:?}]\n[[models]]\nformula = \"rent ~ size_sqft\"\nreport = \"r5.txt\"\n[[models]]\nformula = \"rent ~ bedrooms\"\nsingular = \"error\"\nalpha = 2.0\n"),
            2,
            "alpha",
        ),
    ];
    for (name, text, code, needle) in cases {
        let p = write(d, name, &text);
        let out = gramfit(["run", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{name}: {err}");
        assert!(err.contains(needle), "{name}: expected '{needle}' in {err}");
    }
    for f in ["r1.txt", "r2.txt", "s2.gramfit", "r3.txt", "r4.txt", "r5.txt"] {
        assert!(!d.join(f).exists(), "{f} must not be written by a failing job");
    }
}

#[test]
fn readme_walkthrough_commands_work_as_printed() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("<!-- walkthrough:start -->").expect("walkthrough start marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("walkthrough end marker");
    let section = &readme[start..end];
    let mut in_sh = false;
    let mut commands = Vec::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if in_sh && line.starts_with("gramfit ") {
            commands.push(line.to_string());
        }
    }
    assert!(commands.len() >= 12, "found {} commands", commands.len());
    let tmp = tempdir();
    let work = tmp.path();
    std::fs::create_dir_all(work.join("datasets/daily")).unwrap();
    for f in ["listings.csv", "daily/listings-day1.csv", "daily/listings-day2.csv"] {
        std::fs::copy(repo().join("datasets").join(f), work.join("datasets").join(f)).unwrap();
    }
    let bin_dir = Path::new(bin()).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    for cmd in commands {
        let expect_fail = cmd.contains("# exits 1");
        let out = Command::new("sh").arg("-c").arg(&cmd).current_dir(work).env("PATH", &path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if expect_fail {
            assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        } else {
            assert!(out.status.success(), "{cmd}: {err}");
        }
        assert!(!err.contains("panicked"), "{cmd}: {err}");
    }
    assert!(work.join("out/corr.svg").exists());
    assert!(work.join("out/merged.gramfit").exists());
}

/// Groups in runs longer than a chunk (a file sorted by its group, as
/// exports often are), so that some chunks hold no row of a group: every
/// group's second pass in one read (`fit --by`) and a saved group's own
/// second pass (`diagnose`, which selects the group chunk by chunk) give
/// the same robust errors, and they are those of the group's rows alone.
#[test]
fn groups_in_runs_longer_than_a_chunk_have_their_second_pass() {
    let tmp = tempdir();
    let mut rng = gramfit::generate::Rng::new(11);
    let mut all = String::from("g,x,y\n");
    let mut alone = vec![String::from("x,y\n"); 3];
    for r in 0..30_000 {
        let g = [r >= 12_000, r >= 22_000].iter().filter(|&&b| b).count();
        let x = (rng.uniform() * 1000.0).round() / 100.0;
        let y = 2.0 + 3.0 * x + (g as f64 + 1.0) * x * (rng.uniform() - 0.5);
        all.push_str(&format!("{},{x},{y:.4}\n", ["a", "b", "c"][g]));
        alone[g].push_str(&format!("{x},{y:.4}\n"));
    }
    let data = write(tmp.path(), "sorted.csv", &all);
    let states = tmp.path().join("by/");
    let grouped = gramfit_json([
        "fit",
        data.to_str().unwrap(),
        "-f",
        "y ~ x",
        "--by",
        "g",
        "--cov-type",
        "HC1",
        "--save",
        states.to_str().unwrap(),
        "--format",
        "json",
    ]);
    for (g, level) in ["a", "b", "c"].iter().enumerate() {
        let own = write(tmp.path(), &format!("{level}.csv"), &alone[g]);
        let want = gramfit_json(["fit", own.to_str().unwrap(), "-f", "y ~ x", "--cov-type", "HC1", "--format", "json"]);
        let got = &grouped[level];
        for k in ["Intercept", "x"] {
            for field in ["params", "bse"] {
                let d = crate::common::rel_diff(got[field][k].as_f64().unwrap(), want[field][k].as_f64().unwrap());
                assert!(d <= 1e-9, "{level}: {field} of {k} differs by {d:e}");
            }
        }
        let state = states.join(format!("{level}.gramfit"));
        let diagnosed = gramfit_json(["diagnose", state.to_str().unwrap(), "--cov-type", "HC1", "--format", "json"]);
        assert_eq!(diagnosed["bse"], got["bse"], "{level}: the group's own second pass");
    }
}

#[test]
fn grouped_job_fits_each_group_like_its_own_file() {
    let se = crate::common::shared_datasets().join("streeteasy");
    let tmp = tempdir();
    let f = "rent ~ size_sqft + bedrooms + has_doorman";
    let cfg = write(
        tmp.path(),
        "by.toml",
        &format!(
            "inputs = [{:?}]\nformula = \"{f}\"\nby = \"borough\"\nformat = \"json\"\nreport = \"out/{{group}}.json\"\nstate = \"out/{{group}}.gramfit\"\n",
            se.join("streeteasy.csv").to_str().unwrap()
        ),
    );
    let out = gramfit(["run", cfg.to_str().unwrap(), "--threads", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (group, file) in [("Manhattan", "manhattan.csv"), ("Brooklyn", "brooklyn.csv"), ("Queens", "queens.csv")] {
        let grouped: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join(format!("out/{group}.json"))).unwrap())
                .unwrap();
        let alone = gramfit_json(["fit", se.join(file).to_str().unwrap(), "-f", f, "--format", "json"]);
        assert_eq!(grouped["nobs"], alone["nobs"], "{group}");
        for (k, v) in alone["params"].as_object().unwrap() {
            let d = crate::common::rel_diff(grouped["params"][k].as_f64().unwrap(), v.as_f64().unwrap());
            assert!(d <= 1e-9, "{group}: {k} differs by {d:e}");
        }
        let summary = gramfit_json([
            "summary",
            tmp.path().join(format!("out/{group}.gramfit")).to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert_eq!(summary["params"], grouped["params"], "{group}: state");
        // Every group's state records the input's own fingerprint (taken
        // once for all the groups) and the group's rows.
        let st = gramfit::state::load(&tmp.path().join(format!("out/{group}.gramfit"))).unwrap();
        let input = se.join("streeteasy.csv");
        let (size, sha) = gramfit::state::fingerprint(&input).unwrap();
        assert_eq!((st.inputs[0].size, st.inputs[0].sha256.as_str()), (size, sha.as_str()), "{group}: provenance");
        assert_eq!(serde_json::json!(st.inputs[0].rows_read - st.inputs[0].rows_dropped), alone["nobs"], "{group}");
    }
    // A grouping column that does not exist is refused before anything is written.
    let bad = write(
        tmp.path(),
        "bad.toml",
        &format!(
            "inputs = [{:?}]\nformula = \"{f}\"\nby = \"boro\"\nreport = \"bad/{{group}}.txt\"\n",
            se.join("streeteasy.csv").to_str().unwrap()
        ),
    );
    let out = gramfit(["run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean 'borough'"));
    assert!(!tmp.path().join("bad").exists());
}

/// `-o` onto a named pipe writes into the pipe (a rename over it would
/// replace it with a plain file, as it once did to `/dev/null`); through a
/// symbolic link, the target is replaced and the link stays.
#[cfg(unix)]
#[test]
fn report_output_keeps_pipes_and_links() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempdir();
    let fifo = tmp.path().join("report.pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let l = listings();
    let out = gramfit(["fit", l.as_str(), "-f", F, "--format", "json", "-o", fifo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Checked before waiting for the reader, which would wait forever on a
    // pipe replaced by a file.
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the pipe is still a pipe");
    let text = reader.join().unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).expect("the report came through the pipe");
    assert!(json["params"].is_object());

    let target = tmp.path().join("reports").join("fit.json");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, "old").unwrap();
    let link = tmp.path().join("latest.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = gramfit(["fit", l.as_str(), "-f", F, "--format", "json", "-o", link.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(written["params"], json["params"], "the link's target holds the new report");
}

/// The library's entry to `gramfit fit` (`app::fit_report`, for callers
/// such as the coming Python package) gives the report the command line
/// prints, in every format and for every kind of fit: plain, a factor by
/// blocks, absorbed, grouped.
#[test]
fn the_librarys_fit_report_is_what_the_command_line_prints() {
    use clap::Parser;
    use gramfit::cli::{Cli, Command as Cmd};
    let data = crate::common::streeteasy();
    let tmp = crate::common::tempdir();
    let levels = tmp.path().join("levels.csv");
    crate::estimated::many_levels_csv(&levels, 3000, 320, false);
    let cases: [(&std::path::Path, &[&str]); 4] = [
        (&data, &["-f", "rent ~ size_sqft + bedrooms + C(borough)", "--cov-type", "HC1"]),
        (&levels, &["-f", "y ~ x1 + x2 + C(g)"]),
        (&data, &["-f", "rent ~ size_sqft + bedrooms | neighborhood"]),
        (&data, &["-f", "rent ~ size_sqft + bedrooms", "--by", "borough"]),
    ];
    for (file, case) in cases {
        let mut argv = vec!["gramfit", "fit", file.to_str().unwrap(), "-q"];
        argv.extend_from_slice(case);
        let Cmd::Fit(args) = Cli::parse_from(&argv).command else { panic!("a fit") };
        let report = gramfit::app::fit_report(&args).unwrap_or_else(|e| panic!("{case:?}: {e}"));
        for format in ["json", "text"] {
            let mut cli = argv[1..].to_vec();
            cli.extend(["--format", format]);
            let out = std::process::Command::new(crate::common::bin()).args(&cli).output().unwrap();
            assert!(out.status.success(), "{case:?}: {}", String::from_utf8_lossy(&out.stderr));
            let printed = String::from_utf8(out.stdout).unwrap();
            let f = if format == "json" { gramfit::report::Format::Json } else { gramfit::report::Format::Text };
            let ours = report.render(f);
            if case[1].contains("C(g)") && format == "json" {
                assert!(ours.contains("estimated by blocks"), "the block path");
            }
            // The run's clock and timing differ between the two runs.
            let timeless = |t: &str| -> Vec<String> {
                t.lines()
                    .filter(|l| {
                        !["Date:", "Time:", "elapsed", "fitted_at", "Fitted", "Pass over the data"]
                            .iter()
                            .any(|w| l.contains(w))
                    })
                    .map(String::from)
                    .collect()
            };
            assert_eq!(timeless(&ours), timeless(&printed), "{case:?} {format}");
        }
    }
}

//! Nothing lost, nothing counted twice: concurrent writers serialize under
//! the state's lock; files that grow are read on from where they stopped;
//! grouped states fold only their group; a version-1 state still loads;
//! SIGKILL during a merge leaves the old or the new state.

use crate::common::{bin, gramfit, gramfit_json, json_differences, shared_datasets, tempdir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(args: &[&str]) -> Value {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--format", "json"]);
    if args[0] != "summary" {
        a.push("--quiet");
    }
    gramfit_json(a)
}

const VOLATILE: [&str; 4] = ["fitted_at", "elapsed_s", "inputs", "durbin_watson"];

/// The report fields that come from the statistics (a state's report has
/// no second pass after an update).
fn first_pass(v: &Value) -> Value {
    let mut v = v.clone();
    for k in ["omnibus", "prob_omnibus", "skew", "kurtosis", "jarque_bera", "prob_jb", "durbin_watson", "gramfit_notes"]
    {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

fn assert_same(what: &str, a: &Value, b: &Value, tol: f64) {
    let d = json_differences(&first_pass(a), &first_pass(b), tol, &VOLATILE);
    assert!(d.is_empty(), "{what}: {} differences: {:?}", d.len(), &d[..d.len().min(5)]);
}

/// The StreetEasy listings' header and rows (its last line has no line end).
fn listing_lines() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(shared_datasets().join("streeteasy/streeteasy.csv")).unwrap();
    let mut lines = text.lines().map(String::from);
    let header = lines.next().unwrap();
    (header, lines.collect())
}

fn write_csv(path: &Path, header: &str, rows: &[String]) {
    let mut t = format!("{header}\n");
    for r in rows {
        t.push_str(r);
        t.push('\n');
    }
    std::fs::write(path, t).unwrap();
}

const F: &str = "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + C(borough)";

#[test]
fn seven_concurrent_updates_all_land() {
    let tmp = tempdir();
    let (header, rows) = listing_lines();
    let parts: Vec<PathBuf> = (0..8).map(|i| tmp.path().join(format!("part{i}.csv"))).collect();
    for (i, p) in parts.iter().enumerate() {
        write_csv(p, &header, &rows[i * 625..(i + 1) * 625]);
    }
    let st = tmp.path().join("s.gramfit");
    json(&["fit", s(&parts[0]), "-f", F, "--save", s(&st)]);
    let children: Vec<_> = parts[1..]
        .iter()
        .map(|p| {
            Command::new(bin())
                .args(["update", s(&st), s(p), "--quiet", "--format", "json"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let summary = json(&["summary", s(&st)]);
    assert_eq!(summary["rows"]["read"], 5000, "every file's rows are in the state");
    assert_eq!(summary["inputs"].as_array().unwrap().len(), 8);
    let all: Vec<&str> = parts.iter().map(|p| s(p)).collect();
    let mut args = vec!["fit"];
    args.extend(&all);
    args.extend(["-f", F, "--no-second-pass"]);
    assert_same("seven updates", &json(&args), &summary, 1e-11);
}

#[test]
fn a_second_writer_with_wait_zero_fails_naming_the_holder() {
    let tmp = tempdir();
    let (header, rows) = listing_lines();
    let (a, b) = (tmp.path().join("a.csv"), tmp.path().join("b.csv"));
    write_csv(&a, &header, &rows[..2500]);
    write_csv(&b, &header, &rows[2500..]);
    let st = tmp.path().join("s.gramfit");
    json(&["fit", s(&a), "-f", F, "--save", s(&st)]);
    let before = std::fs::read(&st).unwrap();
    let held =
        gramfit::state::lock::lock(&st, "gramfit update (the test)", gramfit::state::lock::Wait::Forever, &mut |_| {})
            .unwrap();
    let out = gramfit(["update", s(&st), s(&b), "--wait", "0", "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("s.gramfit: locked by 'gramfit update (the test)' (pid"), "{err}");
    assert!(err.contains("not waiting (--wait 0)"), "{err}");
    let out = gramfit(["update", s(&st), s(&b), "--wait", "0.3", "--quiet"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("gave up after waiting"));
    assert_eq!(std::fs::read(&st).unwrap(), before, "nothing was written");
    drop(held);
    let after = json(&["update", s(&st), s(&b), "--wait", "0"]);
    assert_eq!(after["rows"]["read"], 5000);
}

#[test]
fn a_csv_that_grows_is_read_on_from_where_it_stopped() {
    let tmp = tempdir();
    let (header, rows) = listing_lines();
    let whole = tmp.path().join("whole.csv");
    write_csv(&whole, &header, &rows);
    let reference = json(&["fit", s(&whole), "-f", F, "--no-second-pass"]);
    let feed = tmp.path().join("feed.csv");
    let st = tmp.path().join("s.gramfit");
    // Day one: 2000 rows, the last without a line end (read as a row).
    let mut text = format!("{header}\n{}", rows[..2000].join("\n"));
    std::fs::write(&feed, &text).unwrap();
    json(&["fit", s(&feed), "-f", F, "--save", s(&st)]);
    // Day two: a line end and 1500 more rows appended.
    text.push('\n');
    text.push_str(&rows[2000..3500].join("\n"));
    text.push('\n');
    std::fs::write(&feed, &text).unwrap();
    let j = json(&["update", s(&st), s(&feed)]);
    assert_eq!(j["rows"]["read"], 3500, "only the appended rows were added");
    // Unchanged since: already in.
    let out = gramfit(["update", s(&st), s(&feed), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already folded"));
    // Day three: the rest.
    text.push_str(&rows[3500..].join("\n"));
    text.push('\n');
    std::fs::write(&feed, &text).unwrap();
    let j = json(&["update", s(&st), s(&feed)]);
    assert_same("append then update", &reference, &j, 1e-12);
    // The recorded content can be taken back out whole.
    let out = gramfit(["retract", s(&st), s(&feed), "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no rows now"));
    assert_eq!(gramfit::state::load(&st).unwrap().accumulator.rows_read, 0);
}

#[test]
fn a_changed_or_rewritten_file_is_refused_with_what_to_do() {
    let tmp = tempdir();
    let (header, rows) = listing_lines();
    let st = tmp.path().join("s.gramfit");
    // A CSV whose folded rows were edited.
    let csv = tmp.path().join("feed.csv");
    write_csv(&csv, &header, &rows[..1000]);
    json(&["fit", s(&csv), "-f", F, "--save", s(&st)]);
    let mut edited = rows[..1000].to_vec();
    edited[10] = edited[10].replacen(",", ",9", 1);
    write_csv(&csv, &header, &edited);
    let out = gramfit(["update", s(&st), s(&csv), "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("feed.csv has changed since it was folded in") && err.contains("--force"), "{err}");
    // A Parquet file rewritten with more rows.
    let pq = tmp.path().join("listings.parquet");
    gramfit::generate::write_parquet(&pq, 3, 0, 1000, 500).unwrap();
    let st2 = tmp.path().join("p.gramfit");
    json(&["fit", s(&pq), "-f", "rent ~ size_sqft", "--save", s(&st2)]);
    let before = std::fs::read(&st2).unwrap();
    gramfit::generate::write_parquet(&pq, 3, 0, 1500, 500).unwrap();
    let out = gramfit(["update", s(&st2), s(&pq), "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("listings.parquet has changed since it was folded in"), "{err}");
    assert!(err.contains("a Parquet or Arrow IPC file is rewritten, not appended"), "{err}");
    assert!(err.contains("retract needs the old content"), "{err}");
    assert_eq!(std::fs::read(&st2).unwrap(), before);
    // A last line folded in as a row and then continued.
    let tail = tmp.path().join("tail.csv");
    let text = format!("{header}\n{}", rows[..10].join("\n"));
    std::fs::write(&tail, &text).unwrap();
    let st3 = tmp.path().join("t.gramfit");
    json(&["fit", s(&tail), "-f", F, "--save", s(&st3)]);
    std::fs::write(&tail, format!("{text}5\n{}\n", rows[10])).unwrap();
    let out = gramfit(["update", s(&st3), s(&tail), "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the new bytes continue it"), "{err}");
}

#[test]
fn an_arrow_stream_that_grows_is_read_past_its_rows() {
    use arrow::ipc::writer::StreamWriter;
    let tmp = tempdir();
    let whole = tmp.path().join("whole.arrow");
    gramfit::generate::write_ipc(&whole, 5, 0, 30_000, false).unwrap();
    let reader = arrow::ipc::reader::FileReader::try_new(std::fs::File::open(&whole).unwrap(), None).unwrap();
    let schema = reader.schema();
    let batches: Vec<_> = reader
        .map(|b| b.unwrap())
        .flat_map(|b| (0..b.num_rows()).step_by(4000).map(move |at| b.slice(at, 4000.min(b.num_rows() - at))))
        .collect();
    assert!(batches.len() >= 3);
    let f = "rent ~ size_sqft + bedrooms + C(borough)";
    let reference = json(&["fit", s(&whole), "-f", f, "--no-second-pass"]);
    let stream = tmp.path().join("feed.arrows");
    let st = tmp.path().join("s.gramfit");
    // A stream still being written: batches flushed, no end marker yet.
    let mut w = StreamWriter::try_new(std::fs::File::create(&stream).unwrap(), &schema).unwrap();
    let half = batches.len() / 2;
    for b in &batches[..half] {
        w.write(b).unwrap();
    }
    w.flush().unwrap();
    json(&["fit", s(&stream), "-f", f, "--save", s(&st)]);
    for b in &batches[half..] {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let j = json(&["update", s(&st), s(&stream)]);
    assert_same("stream grown", &reference, &j, 1e-12);
}

#[test]
fn a_grouped_state_folds_only_its_group() {
    let tmp = tempdir();
    let (header, rows) = listing_lines();
    let borough = header.split(',').position(|h| h == "borough").unwrap();
    let (a, b) = (tmp.path().join("a.csv"), tmp.path().join("day.csv"));
    write_csv(&a, &header, &rows[..4000]);
    write_csv(&b, &header, &rows[4000..]);
    let cfg = tmp.path().join("job.toml");
    std::fs::write(
        &cfg,
        format!("inputs = [\"a.csv\"]\nformula = \"{F}\"\nby = \"borough\"\nstate = \"st-{{group}}.gramfit\"\nformat = \"json\"\nreport = \"r-{{group}}.json\"\n"),
    )
    .unwrap();
    let out = gramfit(["run", s(&cfg), "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = tmp.path().join("st-Brooklyn.gramfit");
    let j = json(&["update", s(&st), s(&b)]);
    // The same as a fit of Brooklyn's rows of both files.
    let brooklyn: Vec<String> =
        rows.iter().filter(|r| r.split(',').nth(borough) == Some("Brooklyn")).cloned().collect();
    let only = tmp.path().join("brooklyn.csv");
    write_csv(&only, &header, &brooklyn);
    let reference = json(&["fit", s(&only), "-f", F, "--no-second-pass"]);
    assert_eq!(j["rows"]["read"].as_u64().unwrap(), brooklyn.len() as u64, "only Brooklyn's rows");
    assert_same("grouped update", &reference, &j, 1e-11);
    // States of different groups are not the same model.
    let out =
        gramfit(["merge", s(&st), s(&tmp.path().join("st-Queens.gramfit")), "-o", s(&tmp.path().join("m.gramfit"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the group borough = Queens vs the group borough = Brooklyn"), "{err}");
    // Its second pass reads its group's rows only.
    let d = json(&["diagnose", s(&st)]);
    let direct = json(&["fit", s(&only), "-f", F]);
    let dw = |v: &Value| v["durbin_watson"].as_f64().unwrap();
    assert!((dw(&d) - dw(&direct)).abs() < 1e-9 * dw(&direct), "{} vs {}", dw(&d), dw(&direct));
}

#[test]
fn follow_mode_reads_a_growing_csv_like_tail_f_and_retries_a_bad_file() {
    let tmp = tempdir();
    let (header, rows) = listing_lines();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    let st = tmp.path().join("s.gramfit");
    let seed = tmp.path().join("seed.csv");
    write_csv(&seed, &header, &rows[..100]);
    let mut child = Command::new(bin())
        .args(["fit", s(&seed), "-f", F, "--save", s(&st), "--follow", s(&dir), "--quiet"])
        .args(["--poll-ms", "30", "--settle-ms", "150", "--tail-ms", "600000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rows_in = |n: u64| {
        for _ in 0..300 {
            if let Ok(state) = gramfit::state::load(&st) {
                if state.accumulator.rows_read == n {
                    return true;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        false
    };
    assert!(rows_in(100), "seed fitted");
    // Written in place in two pieces, the first ending inside a line.
    let feed = dir.join("feed.csv");
    let body = rows[100..3000].join("\n") + "\n";
    let cut = body[..body.len() / 2].rfind('\n').unwrap() + 7;
    std::fs::write(&feed, format!("{header}\n{}", &body[..cut])).unwrap();
    let complete = body[..cut].matches('\n').count() as u64;
    assert!(rows_in(100 + complete), "the complete lines of the first piece");
    std::thread::sleep(std::time::Duration::from_millis(400));
    std::fs::write(&feed, format!("{header}\n{body}")).unwrap();
    assert!(rows_in(3000), "the rest once written, the split line whole");
    // A file that cannot be read (a column missing) is reported, and read
    // once it is fixed.
    let bad = dir.join("late.csv");
    std::fs::write(&bad, "rent,size_sqft\n1,2\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    write_csv(&bad, &header, &rows[3000..]);
    assert!(rows_in(5000), "the fixed file folded in");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("late.csv") && err.contains("tried again when it changes"), "{err}");
    let whole = tmp.path().join("whole.csv");
    write_csv(&whole, &header, &rows);
    let reference = json(&["fit", s(&whole), "-f", F, "--no-second-pass"]);
    assert_same("followed", &reference, &json(&["summary", s(&st)]), 1e-11);
}

#[test]
fn a_version_1_state_loads_and_reports_as_it_did() {
    // tests/fixtures/state-v1.gramfit was written by the first release
    // (format version 1) with `gramfit fit datasets/listings.csv -f "rent ~
    // size_sqft + bedrooms + C(borough)" --cov-type HC3 --save …`, and
    // state-v1.summary.json is that release's `summary --format json`.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let v1 = dir.join("state-v1.gramfit");
    let bytes = std::fs::read(&v1).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1, "the fixture is a version-1 file");
    let then: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state-v1.summary.json")).unwrap()).unwrap();
    let now = json(&["summary", s(&v1)]);
    // Every figure as the first release printed it; the robust F (a
    // pseudo-inverse now, as statsmodels computes it) to rounding.
    let d = json_differences(&then, &now, 0.0, &["fvalue", "f_pvalue"]);
    assert!(d.is_empty(), "{d:?}");
    assert!(json_differences(&then["fvalue"], &now["fvalue"], 1e-9, &[]).is_empty());
    // Upgraded in memory, written back as the current version of a state
    // without absorbed factors.
    let tmp = tempdir();
    let copy = tmp.path().join("v1.gramfit");
    std::fs::copy(&v1, &copy).unwrap();
    let (header, rows) = listing_lines();
    let more = tmp.path().join("more.csv");
    write_csv(&more, &header, &rows[..100]);
    let cwd = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(bin()).current_dir(cwd).args(["update", s(&copy), s(&more), "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&copy).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), gramfit::state::FORMAT_VERSION);
}

#[test]
fn sigkill_during_merge_leaves_old_or_new_state() {
    let tmp = tempdir();
    let f = "rent ~ size_sqft + bedrooms + C(neighborhood)";
    let parts: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("p{i}.csv"))).collect();
    let states: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("s{i}.gramfit"))).collect();
    for i in 0..2 {
        gramfit::generate::write_csv(&parts[i], 9, i as u64 * 1000, 1000).unwrap();
        json(&["fit", s(&parts[i]), "-f", f, "--save", s(&states[i])]);
    }
    let out = tmp.path().join("m.gramfit");
    let old = std::fs::read(&states[0]).unwrap();
    let mut seen = [0usize; 2];
    let mut seed = 99u64;
    for _ in 0..20 {
        std::fs::write(&out, &old).unwrap();
        let mut child = Command::new(bin())
            .args(["merge", s(&states[0]), s(&states[1]), "-o", s(&out), "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_micros((seed >> 33) % 30_000));
        let _ = child.kill();
        let _ = child.wait();
        let bytes = std::fs::read(&out).unwrap();
        let st = gramfit::state::decode(&bytes, &out).expect("a complete, valid state");
        seen[usize::from(bytes != old)] += 1;
        assert!(st.accumulator.rows_read == 1000 || st.accumulator.rows_read == 2000);
    }
    println!("SIGKILL during merge: {} old, {} new", seen[0], seen[1]);
}

/// States written before the payload became CBOR (format version 5) —
/// JSON, a plain fit as version 2, an absorbed one as 3, one by blocks as 4
/// (`tests/fixtures/state-v{2,3,4}.gramfit`, written by main at c38031e
/// from `datasets/listings.csv`) — load, report what a fit of the same file
/// reports today, and are written back as version 5 by an update.
#[test]
fn states_in_the_json_versions_load_and_report_as_a_fit_of_their_data() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = root.join("tests/fixtures");
    let data = root.join("datasets/listings.csv");
    let tmp = tempdir();
    for (version, formula, dense_levels) in [
        (2, "rent ~ size_sqft + bedrooms + C(borough)", "300"),
        (3, "rent ~ size_sqft + bedrooms | neighborhood", "300"),
        (4, "rent ~ size_sqft + bedrooms + C(neighborhood)", "3"),
    ] {
        let file = fixtures.join(format!("state-v{version}.gramfit"));
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), version, "the fixture's version");
        let run = |args: &[&str]| {
            let out =
                Command::new(bin()).current_dir(root).args(args).env("GRAMFIT_DENSE_LEVELS", dense_levels).output();
            let out = out.unwrap();
            assert!(out.status.success(), "v{version}: {}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        };
        let then = run(&["summary", s(&file), "--format", "json"]);
        let now = run(&["fit", s(&data), "-f", formula, "--format", "json", "-q"]);
        let d = json_differences(&now, &then, 0.0, &["elapsed_s", "fitted_at", "gramfit_notes", "inputs"]);
        assert!(d.is_empty(), "v{version}: {d:?}");
        let copy = tmp.path().join(format!("v{version}.gramfit"));
        std::fs::copy(&file, &copy).unwrap();
        let (header, rows) = listing_lines();
        let more = tmp.path().join(format!("more{version}.csv"));
        write_csv(&more, &header, &rows[..100]);
        run(&["update", s(&copy), s(&more), "--format", "json", "-q"]);
        let bytes = std::fs::read(&copy).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), gramfit::state::FORMAT_VERSION);
    }
}

//! A state file is an input like any other: one whose checksum matches but
//! whose contents disagree with themselves (a field of the wrong type or
//! length, a huge or negative number, a key missing, a list cut short) is
//! refused as damaged or inconsistent — or, where it is still a consistent
//! state, reported, merged and updated — and never makes gramfit panic.
//! The property tests mutate valid states' payloads — as values, encoded
//! in the current CBOR form or the JSON of versions up to 4, and as raw
//! CBOR bytes — and re-seal them with a correct checksum.

use crate::common::{gramfit_json, shared_datasets};
use gramfit::engine::{self, EngineOptions, Progress};
use gramfit::model::{self, ReportOptions, Resolved};
use gramfit::report::{self, Format};
use gramfit::state::{self, State};
use proptest::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Valid states of several shapes (categoricals, WLS, a robust second pass,
/// a grouped state with inputs, an intercept-free model, two absorbed
/// factors, a factor estimated by blocks), their payloads
/// as JSON, and a small CSV file to update them with.
fn fixtures() -> &'static (Vec<Value>, PathBuf) {
    static F: OnceLock<(Vec<Value>, PathBuf)> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("state-mutation");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = shared_datasets().join("streeteasy/streeteasy.csv");
        let text = std::fs::read_to_string(&data).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let small = dir.join("small.csv");
        std::fs::write(&small, format!("{}\n", lines[..300].join("\n"))).unwrap();
        let d = small.to_str().unwrap();
        let mut out = Vec::new();
        let jobs: [&[&str]; 5] = [
            &["-f", "rent ~ size_sqft + bedrooms + C(borough) + C(neighborhood):has_doorman", "--cov-type", "HC3"],
            &["-f", "rent ~ size_sqft + bedrooms | neighborhood + submarket", "--weights", "1/(1+min_to_subway)"],
            &["-f", "np.log(rent) ~ size_sqft + I(min_to_subway**2) - 1", "--weights", "1/(1+min_to_subway)"],
            &["-f", "rent ~ C(borough, Treatment('Queens')) * bedrooms", "--cov-type", "cluster", "--cluster", "borough"],
            &["-f", "rent ~ has_washer_dryer + no_fee", "--no-second-pass"],
        ];
        for (i, job) in jobs.iter().enumerate() {
            let st = dir.join(format!("s{i}.gramfit"));
            let mut args = vec!["fit", d, "--save", st.to_str().unwrap(), "--format", "json", "-q"];
            args.extend_from_slice(job);
            gramfit_json(args);
            out.push(payload(&std::fs::read(&st).unwrap()));
        }
        // A factor estimated by blocks (the threshold lowered for it).
        let st = dir.join("blocks.gramfit");
        let status = std::process::Command::new(crate::common::bin())
            .args(["fit", d, "-f", "rent ~ size_sqft + C(neighborhood)", "-q", "-o", "/dev/null", "--save"])
            .arg(&st)
            .env("GRAMFIT_DENSE_LEVELS", "10")
            .status()
            .unwrap();
        assert!(status.success());
        out.push(payload(&std::fs::read(&st).unwrap()));
        let cfg = dir.join("job.toml");
        std::fs::write(&cfg, format!("inputs = [\"{d}\"]\nformula = \"rent ~ size_sqft\"\nby = \"borough\"\nstate = \"g-{{group}}.gramfit\"\nreport = \"g-{{group}}.txt\"\n")).unwrap();
        let status = std::process::Command::new(crate::common::bin()).args(["run", cfg.to_str().unwrap(), "-q"]).status().unwrap();
        assert!(status.success());
        out.push(payload(&std::fs::read(dir.join("g-Manhattan.gramfit")).unwrap()));
        (out, small)
    })
}

/// The payload of a state file's bytes (CBOR), as a JSON value.
fn payload(bytes: &[u8]) -> Value {
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), state::FORMAT_VERSION);
    ciborium::from_reader(&bytes[20..bytes.len() - 4]).unwrap()
}

/// A state file's bytes around `v`: CBOR in the current version, or JSON
/// in the last version that had it.
fn seal(v: &Value, json: bool) -> Vec<u8> {
    if json {
        return seal_bytes(&serde_json::to_vec(v).unwrap(), state::LAST_JSON_VERSION);
    }
    let mut payload = Vec::new();
    ciborium::into_writer(v, &mut payload).unwrap();
    seal_bytes(&payload, state::FORMAT_VERSION)
}

/// A state file's bytes around a payload, with a correct checksum.
fn seal_bytes(payload: &[u8], version: u32) -> Vec<u8> {
    let mut out = state::MAGIC.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Every place in a JSON value (paths of keys and indices).
fn places(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                at.push(k.clone());
                places(c, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                at.push(i.to_string());
                places(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Object(m) => m.get_mut(k),
        Value::Array(a) => a.get_mut(k.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Apply mutation `kind` at `path`.
fn mutate(v: &mut Value, path: &[String], kind: u8) {
    if kind == 5 || kind == 6 {
        // Remove the place, or duplicate it, in its parent.
        let Some((last, parent)) = path.split_last() else { return };
        match at_mut(v, parent) {
            Some(Value::Object(m)) if kind == 5 => {
                m.remove(last);
            }
            Some(Value::Array(a)) => {
                let i: usize = last.parse().unwrap_or(0).min(a.len().saturating_sub(1));
                if kind == 5 && !a.is_empty() {
                    a.remove(i);
                } else if let Some(x) = a.get(i).cloned() {
                    a.insert(i, x);
                }
            }
            _ => {}
        }
        return;
    }
    let Some(target) = at_mut(v, path) else { return };
    *target = match kind {
        0 => Value::String("x".into()),
        1 => Value::Null,
        2 => serde_json::json!(1e308),
        3 => serde_json::json!(-1),
        4 => serde_json::json!(0),
        7 => serde_json::json!([]),
        8 => serde_json::json!({}),
        9 => match target {
            Value::Number(n) => serde_json::json!(n.as_f64().unwrap_or(0.0) * 2.0 + 1.0),
            Value::Array(a) => Value::Array(a.iter().rev().cloned().collect()),
            Value::String(s) => Value::String(format!("{s}_")),
            _ => Value::Bool(true),
        },
        10 => serde_json::json!(u64::MAX),
        _ => serde_json::json!(-1e-300),
    };
}

/// What gramfit does with a state: report it in every format (with its
/// second pass), merge it with itself, update it with a small file.
fn exercise(st: &State, small: &Path) {
    // Level sums (absorbed, or a factor by blocks): their statistics are
    // of the rest of the model, reported through the app (decoding them
    // is what is tested here).
    if st.absorbed.is_some() {
        return;
    }
    let Ok(resolved) = Resolved::new(st.model.clone(), st.column_types.clone()) else { return };
    for singular in [gramfit::solve::SingularPolicy::Drop, gramfit::solve::SingularPolicy::Pinv] {
        let ro = ReportOptions { singular, alpha: 0.05 };
        if let Ok(mut res) = model::results_of(&resolved, &st.accumulator, &ro) {
            if let Some(snap) = &st.residuals {
                gramfit::results::apply_second_pass(&mut res, snap);
            }
            let info = model::run_info(&resolved, &st.accumulator, Vec::new(), st.fitted_at, st.elapsed_s);
            for f in [Format::Text, Format::Json, Format::Markdown, Format::Csv] {
                let _ = report::render(&res, &info, f);
            }
        }
    }
    let mut twice = st.accumulator.clone();
    twice.merge(&st.accumulator);
    let _ = twice.retract(&st.accumulator);
    // An update: the state's model over a small file, folded in.
    let Ok(opened) = model::open_inputs(&[small.to_string_lossy().to_string()], &st.model.csv) else { return };
    let eo = EngineOptions { threads: 1, ..EngineOptions::default() };
    let builder = resolved.builder();
    let got: Result<(gramfit::accumulator::FitAccumulator, _), _> =
        engine::accumulate(opened, &builder, &eo, &Progress::default());
    if let Ok((acc, _)) = got {
        let mut updated = st.accumulator.clone();
        updated.merge(&acc);
        let _ = model::results_of(&resolved, &updated, &ReportOptions::default());
    }
}

/// Apply `picks` (a place, a mutation) to fixture `which`, reseal it, and
/// decode it: refused with the file named, or used without a panic.
fn check_mutated(which: usize, picks: &[(prop::sample::Index, u8)], json: bool) -> Result<(), TestCaseError> {
    let (states, _) = fixtures();
    let mut v = states[which].clone();
    for (pick, kind) in picks {
        let mut all = Vec::new();
        places(&v, &mut Vec::new(), &mut all);
        let path = pick.get(&all).clone();
        mutate(&mut v, &path, *kind);
    }
    decoded_or_refused(&seal(&v, json))
}

/// `bytes` decoded and used without a panic, or refused naming the file.
fn decoded_or_refused(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (_, small) = fixtures();
    match state::decode(bytes, Path::new("m.gramfit")) {
        Ok(st) => exercise(&st, small),
        Err(e) => {
            let m = e.to_string();
            prop_assert!(m.starts_with("m.gramfit: ") && m.contains("damaged or inconsistent"), "{m}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_resealed_mutated_state_is_refused_or_used_never_a_panic(
        which in 0usize..7,
        picks in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..12), 1..4),
        json in any::<bool>(),
    ) {
        check_mutated(which, &picks, json)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    /// Bytes of the CBOR payload overwritten (a length header that
    /// announces 2⁶⁴ items, a string cut, a float turned into a map):
    /// the parser's errors too are refusals, never a panic or an
    /// allocation of what a header claims.
    #[test]
    fn a_resealed_state_with_damaged_cbor_is_refused_or_used_never_a_panic(
        which in 0usize..7,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let (states, _) = fixtures();
        let mut payload = Vec::new();
        ciborium::into_writer(&states[which], &mut payload).unwrap();
        for (at, byte) in &edits {
            let i = at.index(payload.len());
            payload[i] = *byte;
        }
        decoded_or_refused(&seal_bytes(&payload, state::FORMAT_VERSION))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Mutations that keep the payload's form (numbers changed, list
    /// entries removed or repeated), so that it parses and the checks of
    /// consistency — not the parser — must catch what is wrong.
    #[test]
    fn a_resealed_state_with_consistent_types_is_refused_or_used_never_a_panic(
        which in 0usize..7,
        picks in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec![4u8, 5, 6, 9, 11])), 1..4),
        json in any::<bool>(),
    ) {
        check_mutated(which, &picks, json)?;
    }
}

#[test]
fn the_fixtures_themselves_decode_and_report() {
    let (states, small) = fixtures();
    for v in states {
        for json in [false, true] {
            let st = state::decode(&seal(v, json), Path::new("f.gramfit")).unwrap();
            exercise(&st, small);
        }
    }
}
